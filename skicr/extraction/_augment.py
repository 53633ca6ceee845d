"""View augmentations: batched on the device, parameters drawn per image.

An augmentation receives float images in ``[0, 1]``, shape ``(n, C, H, W)``,
on the compute device, and a CPU :class:`torch.Generator`; it returns
augmented images. Two kinds:

- :class:`ViewAugmentation` subclasses (such as :class:`RandomAffine`) split
  the work into ``sample_parameters(n, generator)`` (on the CPU, tiny) and
  ``apply(images, parameters)`` (batched on the device). The extractor draws
  each image's parameters from that image's own generator, so the views of an
  image do not depend on the batch size or on the other images.
- Any other callable ``(images, generator) -> images`` is called once per
  batch with one generator for the batch (deterministic for a fixed
  ``batch_size``). kornia augmentation modules, which draw from torch's global
  RNG, are called under :func:`torch.random.fork_rng` seeded from that
  generator, so the global RNG is left untouched.
"""

import math
from numbers import Real

import torch
import torch.nn.functional as F

__all__ = ["ViewAugmentation", "RandomAffine", "resolve_augment"]


class ViewAugmentation:
    """Base class for augmentations whose random parameters are drawn per image.

    Subclasses implement :meth:`sample_parameters` and :meth:`apply`.

    Examples
    --------
    A horizontal flip drawn per image, as a subclass:

    >>> import torch
    >>> from skicr.extraction import FeatureExtractor, ViewAugmentation
    >>> class RandomFlip(ViewAugmentation):
    ...     def sample_parameters(self, n, generator):
    ...         return torch.rand(n, 1, generator=generator)
    ...     def apply(self, images, parameters):
    ...         flip = parameters[:, 0] < 0.5
    ...         return torch.where(flip[:, None, None, None], images.flip(-1), images)
    >>> images = torch.rand(4, 1, 16, 16)
    >>> RandomFlip()(images, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 1, 16, 16])

    The extractor draws each view's parameters from that image's own generator:

    >>> from skicr.models import SmallUNet
    >>> extractor = FeatureExtractor(SmallUNet(channels=(8, 16), mid_channels=16),
    ...                              augment=RandomFlip(), n_views=2, random_state=0)
    >>> extractor.fit(images.numpy()).transform_views(images.numpy()).shape
    (4, 2, 16)
    """

    def sample_parameters(self, n, generator):
        """Draw the random parameters of ``n`` augmented images.

        Parameters
        ----------
        n : int
            Number of images (views) to augment.
        generator : torch.Generator
            CPU generator to draw from.

        Returns
        -------
        parameters : Tensor of shape (n, n_parameters)
        """
        raise NotImplementedError

    def apply(self, images, parameters):
        """Augment ``images`` with given parameters, batched.

        Parameters
        ----------
        images : Tensor of shape (n, C, H, W)
            Float images in [0, 1].
        parameters : Tensor of shape (n, n_parameters)
            Output of :meth:`sample_parameters`, on the images' device.

        Returns
        -------
        images : Tensor of shape (n, C, H', W')
        """
        raise NotImplementedError

    def __call__(self, images, generator):
        """Augment ``images`` with parameters drawn from ``generator``.

        Parameters
        ----------
        images : Tensor of shape (n, C, H, W)
        generator : torch.Generator

        Returns
        -------
        images : Tensor
        """
        parameters = self.sample_parameters(images.shape[0], generator)
        return self.apply(images, parameters.to(images.device))


def _check_range(name, value, *, low=None, symmetric=False):
    if isinstance(value, Real):
        value = (-float(value), float(value)) if symmetric else (float(value), float(value))
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or a (min, max) pair; got {value!r}.") from exc
    if not (math.isfinite(a) and math.isfinite(b)) or a > b or (low is not None and a < low):
        bound = f" with min >= {low}" if low is not None else ""
        raise ValueError(f"{name} must be a finite (min, max) pair with min <= max{bound}; got {value!r}.")
    return a, b


class RandomAffine(ViewAugmentation):
    """Random scale, rotation, translation (and optional flip), per image.

    Batched with :func:`torch.nn.functional.affine_grid` and
    :func:`~torch.nn.functional.grid_sample`; the parameters of each image
    are drawn independently (unlike transforms that draw one set per call).

    Parameters
    ----------
    scale : float or (float, float), default=(0.6, 1.0)
        Range of the factor applied to the image content (as in kornia's and
        torchvision's ``RandomAffine``): below 1 shrinks it and pads the
        border, above 1 zooms in.
    rotation : float or (float, float), default=15.0
        Rotation range in degrees; a number ``r`` means ``(-r, r)``.
    translation : float or (float, float), default=0.0
        Shift range as a fraction of the image size, for each axis; a number
        ``a`` means ``(-a, a)``.
    horizontal_flip : bool, default=False
        Also flip left-right with probability 1/2.
    padding_mode : {"zeros", "border", "reflection"}, default="zeros"
        How :func:`~torch.nn.functional.grid_sample` fills outside the image
        (zeros are black: augmentations see images in [0, 1]).
    interpolation : {"bilinear", "nearest", "bicubic"}, default="bilinear"

    Examples
    --------
    >>> import torch
    >>> from skicr.extraction import RandomAffine
    >>> augment = RandomAffine(scale=(0.8, 1.0), rotation=10.0)
    >>> images = torch.rand(6, 1, 16, 16)
    >>> augmented = augment(images, torch.Generator().manual_seed(0))
    >>> augmented.shape
    torch.Size([6, 1, 16, 16])
    >>> again = augment(images, torch.Generator().manual_seed(0))   # same seed, same views
    >>> bool(torch.equal(augmented, again))
    True
    """

    def __init__(
        self,
        scale=(0.6, 1.0),
        rotation=15.0,
        translation=0.0,
        horizontal_flip=False,
        padding_mode="zeros",
        interpolation="bilinear",
    ):
        self.scale = scale
        self.rotation = rotation
        self.translation = translation
        self.horizontal_flip = horizontal_flip
        self.padding_mode = padding_mode
        self.interpolation = interpolation
        self._ranges()  # fail early on bad settings
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(
                "padding_mode must be 'zeros', 'border' or 'reflection'; "
                f"got {padding_mode!r}."
            )
        if interpolation not in ("bilinear", "nearest", "bicubic"):
            raise ValueError(
                "interpolation must be 'bilinear', 'nearest' or 'bicubic'; "
                f"got {interpolation!r}."
            )

    def _ranges(self):
        scale = _check_range("scale", self.scale)
        if scale[0] <= 0:
            raise ValueError(f"scale must be > 0; got {self.scale!r}.")
        rotation = _check_range("rotation", self.rotation, symmetric=True)
        translation = _check_range("translation", self.translation, symmetric=True)
        return scale, rotation, translation

    def __repr__(self):
        return (
            f"RandomAffine(scale={self.scale!r}, rotation={self.rotation!r}, "
            f"translation={self.translation!r}, horizontal_flip={self.horizontal_flip!r}, "
            f"padding_mode={self.padding_mode!r}, interpolation={self.interpolation!r})"
        )

    def sample_parameters(self, n, generator):
        """Draw ``n`` parameter rows ``(scale, angle_rad, shift_x, shift_y, flip)``.

        Parameters
        ----------
        n : int
        generator : torch.Generator

        Returns
        -------
        parameters : Tensor of shape (n, 5), float32, on the CPU
        """
        (s0, s1), (r0, r1), (t0, t1) = self._ranges()
        u = torch.rand((n, 5), generator=generator, dtype=torch.float64)
        scale = s0 + (s1 - s0) * u[:, 0]
        angle = torch.deg2rad(r0 + (r1 - r0) * u[:, 1])
        shift = t0 + (t1 - t0) * u[:, 2:4]
        if self.horizontal_flip:
            flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0).to(torch.float64)
        else:
            flip = torch.ones(n, dtype=torch.float64)
        return torch.stack([scale, angle, shift[:, 0], shift[:, 1], flip], dim=1).float()

    def apply(self, images, parameters):
        """Warp ``images`` with one affine map per image.

        Parameters
        ----------
        images : Tensor of shape (n, C, H, W)
        parameters : Tensor of shape (n, 5)

        Returns
        -------
        images : Tensor of shape (n, C, H, W)
        """
        n, _, height, width = images.shape
        p = parameters.to(device=images.device, dtype=torch.float32)
        scale, angle, shift_x, shift_y, flip = p.unbind(1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # output -> input map in pixel-proportional coordinates (so rotations
        # stay rotations on non-square images): p_in = F R^T (p_out - t) / s
        aspect = width / height  # normalised x-unit in units of y
        inverse = torch.empty((n, 2, 2), device=images.device)
        inverse[:, 0, 0] = flip * cos / scale
        inverse[:, 0, 1] = flip * sin / scale / aspect
        inverse[:, 1, 0] = -sin * aspect / scale
        inverse[:, 1, 1] = cos / scale
        shift = torch.stack([2 * shift_x, 2 * shift_y], dim=1)  # fraction -> normalised
        offset = -torch.einsum("nij,nj->ni", inverse, shift)
        theta = torch.cat([inverse, offset.unsqueeze(2)], dim=2)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(
            images,
            grid.to(images.dtype),
            mode=self.interpolation,
            padding_mode=self.padding_mode,
            align_corners=False,
        )


class _GlobalRNGAugmentation:
    """Run a global-RNG augmentation (kornia) under a seeded, forked RNG."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, images, generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self.transform(images)

    def __repr__(self):
        return f"_GlobalRNGAugmentation({self.transform!r})"


def _is_kornia_module(obj):
    return isinstance(obj, torch.nn.Module) and type(obj).__module__.split(".")[0] == "kornia"


def resolve_augment(augment):
    """Turn the ``augment`` parameter into a callable ``(images, generator)``.

    Parameters
    ----------
    augment : "default", None, ViewAugmentation, kornia module or callable

    Returns
    -------
    augmentation : callable or None
    """
    if augment is None:
        return None
    if isinstance(augment, str):
        if augment == "default":
            return RandomAffine()
        raise ValueError(f"augment must be 'default', None or a callable; got {augment!r}.")
    if _is_kornia_module(augment):
        return _GlobalRNGAugmentation(augment)
    if callable(augment):
        return augment
    raise TypeError(
        "augment must be 'default', None, a ViewAugmentation, a kornia augmentation "
        f"or a callable (images, generator) -> images; got {type(augment).__name__}."
    )
