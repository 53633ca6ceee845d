"""The one image check and range conversion of skicr.

Convention (every package uses it: :class:`skicr.FeatureExtractor`, training,
:class:`skicr.ICRMonitor`, the samplers' output): images are ``uint8`` in
``[0, 255]`` or floating point in ``[0, 1]`` (with one tolerance,
:data:`RANGE_TOLERANCE`, for float rounding; such values are clipped); they are
mapped to ``[-1, 1]`` before noise is added. Layouts ``(n, C, H, W)``,
``(n, H, W, C)`` and ``(n, H, W)`` (one channel) are accepted, as numpy arrays
or torch tensors.
"""

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["RANGE_TOLERANCE", "ImageBatches", "check_images", "unit_images", "model_range_images"]

#: how far float images may stray outside [0, 1] (float rounding of a conversion); clipped
RANGE_TOLERANCE = 1e-6

_RANGE_HELP = (
    "Images in [0, 255] should be uint8 (or divided by 255); images in [-1, 1] "
    "should be mapped with (x + 1) / 2."
)


@dataclass
class ImageBatches:
    """Validated images, converted to float tensors in [0, 1] one batch at a time.

    Parameters
    ----------
    data : ndarray or Tensor
        The images as given (not copied).
    layout : {"nchw", "nhwc", "nhw"}
        Axis order of ``data``.
    """

    data: object
    layout: str

    @property
    def n_images(self):
        return int(self.data.shape[0])

    @property
    def n_channels(self):
        return 1 if self.layout == "nhw" else int(
            self.data.shape[1] if self.layout == "nchw" else self.data.shape[3]
        )

    @property
    def image_size(self):
        shape = tuple(self.data.shape)
        return shape[2:4] if self.layout == "nchw" else shape[1:3]

    def batch(self, start, stop, device):
        """Images ``start:stop`` as a float32 tensor (b, C, H, W) in [0, 1] on ``device``.

        Parameters
        ----------
        start, stop : int
        device : torch.device

        Returns
        -------
        images : Tensor of shape (stop - start, C, H, W)
        """
        chunk = self.data[start:stop]
        if isinstance(chunk, np.ndarray):
            chunk = torch.from_numpy(np.ascontiguousarray(chunk))
        # move before the cast: uint8 travels 4x lighter than float32
        chunk = chunk.detach().to(device)
        is_uint8 = chunk.dtype == torch.uint8
        chunk = chunk.float()
        if is_uint8:
            chunk = chunk / 255.0
        else:
            chunk = chunk.clamp(0.0, 1.0)  # values within RANGE_TOLERANCE outside [0, 1]
        if self.layout == "nhw":
            chunk = chunk.unsqueeze(1)
        elif self.layout == "nhwc":
            chunk = chunk.permute(0, 3, 1, 2)
        return chunk.contiguous()


def _as_array(images, name):
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return images
    try:
        array = np.asarray(images)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(
            f"{name} ({type(images).__name__}) could not be turned into one numeric array "
            "(images of different sizes?); pass a numpy array or a torch tensor of shape "
            f"(n, C, H, W), (n, H, W, C) or (n, H, W). numpy said: {exc}"
        ) from exc
    if array.dtype == object:
        raise TypeError(
            f"{name} must be a numeric numpy array or torch tensor; got an object "
            f"array from {type(images).__name__} (images of different sizes?)."
        )
    return array


def _dtype_kind(images):
    if isinstance(images, torch.Tensor):
        if images.dtype == torch.uint8:
            return "uint8"
        return "float" if images.dtype.is_floating_point else "other"
    if images.dtype == np.uint8:
        return "uint8"
    return "float" if np.issubdtype(images.dtype, np.floating) else "other"


def _float_range_check(images, name):
    if isinstance(images, torch.Tensor):
        values = images.detach()
        n_bad = int((~torch.isfinite(values)).sum())
        finite = values[torch.isfinite(values)] if n_bad else values
        low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (0, 0)
    else:
        finite_mask = np.isfinite(images)
        n_bad = int(images.size - np.count_nonzero(finite_mask))
        finite = images[finite_mask] if n_bad else images
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0, 0)
    if n_bad:
        raise ValueError(
            f"{name} contain {n_bad} NaN or infinite value(s); clean or drop "
            "those images first."
        )
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(
            f"float {name} must lie in [0, 1]; got values in [{low:g}, {high:g}]. "
            + _RANGE_HELP
        )


def _channel_layout(shape, expected_channels):
    if expected_channels is not None:
        if shape[1] == expected_channels:
            return "nchw"
        if shape[3] == expected_channels:
            return "nhwc"
        raise ValueError(
            f"The backbone expects {expected_channels}-channel images, but images of "
            f"shape {tuple(shape)} have {shape[1]} channels as (n, C, H, W) and "
            f"{shape[3]} as (n, H, W, C)."
            + (
                " Repeat grayscale images to 3 channels, e.g. "
                "np.repeat(images, 3, axis=1) for (n, 1, H, W)."
                if expected_channels == 3 and 1 in (shape[1], shape[3])
                else ""
            )
        )
    # unknown channel count: channels are the short axis
    if shape[1] <= 4:
        return "nchw"
    if shape[3] <= 4:
        return "nhwc"
    return "nchw"


def check_images(images, *, expected_channels=None, name="images"):
    """Validate images and return them ready for batched conversion.

    Parameters
    ----------
    images : ndarray or Tensor
        Shape ``(n, C, H, W)``, ``(n, H, W, C)`` or ``(n, H, W)``; ``uint8`` in
        ``[0, 255]`` or float in ``[0, 1]``.
    expected_channels : int or None, default=None
        Channel count the backbone needs; resolves the layout of 4-D input
        and gives a clear error on a mismatch.
    name : str, default="images"
        What the images are called in error messages.

    Returns
    -------
    batches : ImageBatches

    Raises
    ------
    TypeError
        For non-numeric input or unsupported dtypes.
    ValueError
        For a wrong rank, an empty set, a channel mismatch, NaN or values out
        of range.
    """
    images = _as_array(images, name)
    shape = tuple(images.shape)
    if len(shape) not in (3, 4):
        raise ValueError(
            f"{name} must have shape (n, C, H, W), (n, H, W, C) or (n, H, W); "
            f"got an array of rank {len(shape)} with shape {shape}."
            + (" Add the image axis for a single image: images[None]." if len(shape) == 2 else "")
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {shape}); need at least one image.")
    if min(shape[1:]) == 0:
        raise ValueError(f"{name} have a zero-size axis: shape {shape}.")

    kind = _dtype_kind(images)
    if kind == "other":
        raise TypeError(
            f"{name} must be uint8 in [0, 255] or floating point in [0, 1]; got dtype "
            f"{images.dtype}. Convert first, e.g. images.astype(np.float32) / images.max() "
            "for non-negative integer images."
        )
    if kind == "float":
        _float_range_check(images, name)

    if len(shape) == 3:
        layout = "nhw"
        if expected_channels not in (None, 1):
            raise ValueError(
                f"{name} of shape {shape} are single-channel (n, H, W), but the backbone "
                f"expects {expected_channels} channels. Repeat the channel, e.g. "
                f"np.repeat(images[:, None], {expected_channels}, axis=1)."
            )
    else:
        layout = _channel_layout(shape, expected_channels)
    return ImageBatches(images, layout)


def unit_images(images, name="images", *, min_images=1):
    """Checked images as one float32 array ``(n, C, H, W)`` in [0, 1].

    Parameters
    ----------
    images : ndarray or Tensor
        As for :func:`check_images`.
    name : str, default="images"
        What the images are called in error messages.
    min_images : int, default=1
        Fewest images accepted.

    Returns
    -------
    images : ndarray of shape (n, C, H, W), float32
        ``uint8`` divided by 255; float values clipped to [0, 1].
    """
    batches = check_images(images, name=name)
    if batches.n_images < min_images:
        raise ValueError(
            f"{name} must hold at least {min_images} images; got {batches.n_images} "
            f"(shape {tuple(batches.data.shape)})."
        )
    return batches.batch(0, batches.n_images, torch.device("cpu")).numpy()


def model_range_images(images, name="images"):
    """:func:`unit_images` mapped to the models' range: a float32 tensor in [-1, 1] (``2 x - 1``)."""
    return torch.from_numpy(unit_images(images, name)) * 2.0 - 1.0
