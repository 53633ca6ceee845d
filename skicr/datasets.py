"""Images ready for the feature extractor: sklearn's digits and a user's own files.

Every loader returns float32 images of shape ``(n_images, n_channels, height,
width)`` with values in [0, 1], the layout :class:`skicr.FeatureExtractor`
and :func:`skicr.models.train_denoiser` take.

Datasets as users store them (a class-per-folder tree, a flat folder, ``.npy``
/ ``.npz``, a Hugging Face dataset) are read one image at a time by
:func:`open_image_dataset` (items ``(C, H, W)`` float32 in [0, 1], with their
label when the data has labels), for DataLoaders (:func:`image_loader`) and
the streaming scan (:class:`skicr.StreamingNoiseLevelSelector`).
"""

from pathlib import Path
from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "load_digits_images",
    "make_shapes_images",
    "SHAPE_CLASSES",
    "load_images",
    "resize_images",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "ArrayImageDataset",
    "HFImageDataset",
    "open_image_dataset",
    "image_loader",
]

#: file extensions read by :func:`load_images` from a folder (case-insensitive)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _check_size(size):
    if not isinstance(size, Integral) or isinstance(size, bool) or size < 2:
        raise ValueError(f"size must be an int >= 2; got {size!r}.")
    return int(size)


def resize_images(images, size):
    """Resize images to ``size x size`` with bicubic interpolation.

    Antialiased when shrinking; values are clipped back to [0, 1] (bicubic
    overshoots at sharp edges).

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W)
        Float images in [0, 1].
    size : int
        Output height and width.

    Returns
    -------
    resized : ndarray of shape (n, C, size, size), float32

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.datasets import resize_images
    >>> images = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    >>> resize_images(images, 16).shape
    (3, 1, 16, 16)
    """
    size = _check_size(size)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, C, H, W); got {images.shape}.")
    if images.shape[2:] == (size, size):
        return images.copy()
    out = F.interpolate(
        torch.from_numpy(images),
        size=(size, size),
        mode="bicubic",
        align_corners=False,
        antialias=size < max(images.shape[2:]),
    )
    return np.clip(out.numpy(), 0.0, 1.0).astype(np.float32)


def load_digits_images(size=16, *, return_y=True):
    """sklearn's bundled handwritten digits as images in [0, 1].

    The 1797 digits of :func:`sklearn.datasets.load_digits` (8x8, values
    0..16) are scaled to [0, 1] and resized to ``size x size`` (bicubic,
    clipped to [0, 1]), which leaves room for augmentation such as small
    rotations and crops. Nothing is downloaded.

    Parameters
    ----------
    size : int, default=16
        Output height and width (8 keeps the original pixels).
    return_y : bool, default=True
        Also return the class labels.

    Returns
    -------
    images : ndarray of shape (1797, 1, size, size), float32
        Values in [0, 1]; background 0, ink up to 1.
    y : ndarray of shape (1797,), int64
        Digit labels 0..9; only when ``return_y=True``.

    Examples
    --------
    >>> from skicr.datasets import load_digits_images
    >>> images, y = load_digits_images()
    >>> images.shape, y.shape
    ((1797, 1, 16, 16), (1797,))
    """
    from sklearn.datasets import load_digits

    size = _check_size(size)
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None]
    images = resize_images(images, size)
    if return_y:
        return images, digits.target.astype(np.int64)
    return images


def _array_to_images(arr, source):
    """Map an array of images to float32 (n, C, H, W) in [0, 1]."""
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{source} contains NaN or infinite values.")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(
                f"float images in {source} must lie in [0, 1]; got values in "
                f"[{arr.min():.3g}, {arr.max():.3g}]. Rescale them (or store uint8 0..255)."
            )
    else:
        raise ValueError(
            f"{source} has dtype {arr.dtype}; use uint8 (0..255), uint16, bool "
            "or float in [0, 1]."
        )
    if arr.ndim == 3:  # (n, H, W): grayscale
        arr = arr[:, None]
    elif arr.ndim == 4:
        channels_first = arr.shape[1] in (1, 3, 4)
        channels_last = arr.shape[3] in (1, 3, 4)
        if channels_last and not channels_first:
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise ValueError(
            f"{source} must hold images of shape (n, H, W), (n, C, H, W) or "
            f"(n, H, W, C); got {arr.shape}."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{source} holds no images (shape {arr.shape}).")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _pillow():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow ships with matplotlib
        raise ImportError(
            "reading image files needs Pillow: pip install pillow "
            "(or pass a .npy array instead)."
        ) from exc
    return Image


_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _pil_to_array(img, mode):
    """One PIL image as float32 (C, H, W) in [0, 1], in ``mode`` ("L" or "RGB")."""
    if img.mode in ("I", "I;16", "F") and mode == "L":
        a = np.asarray(img, dtype=np.float32)
        a = a / 65535.0 if img.mode != "F" else a
        return np.clip(a, 0, 1)[None]
    a = np.asarray(img.convert(mode), dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _open_image(path):
    Image = _pillow()
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except Exception as exc:
        raise ValueError(f"could not read image {str(path)!r}: {exc}") from exc


def _image_files(folder):
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _read_folder(folder, mode, size):
    files = _image_files(folder)
    if not files:
        raise ValueError(
            f"no images found in folder {str(folder)!r} "
            f"(looked for {', '.join(IMAGE_EXTENSIONS)})."
        )
    pil_images = [_open_image(path) for path in files]
    if mode == "auto":
        mode = "L" if all(img.mode in _GREY_MODES for img in pil_images) else "RGB"
    sizes = {img.size for img in pil_images}
    if size is None and len(sizes) > 1:
        examples = {}
        for path, img in zip(files, pil_images):
            examples.setdefault(img.size, path.name)
        listed = ", ".join(f"{w}x{h} ({name})" for (w, h), name in examples.items())
        raise ValueError(
            f"images in {str(folder)!r} have different sizes: {listed}. "
            "Pass size=... to resize them all."
        )
    arrays = [_pil_to_array(img, mode) for img in pil_images]
    if size is not None:
        arrays = [resize_images(a[None], size)[0] for a in arrays]
    return np.stack(arrays), [p.name for p in files]


def load_images(path, *, size=None, mode="auto", return_names=False):
    """Load a user's images: a folder of PNG/JPEG files or a ``.npy`` array.

    Parameters
    ----------
    path : str or Path
        A folder (every file with an extension in ``IMAGE_EXTENSIONS``, sorted
        by name; other files are ignored) or a ``.npy`` file holding an array
        of shape (n, H, W), (n, C, H, W) or (n, H, W, C) with C in {1, 3, 4},
        dtype uint8 (0..255), uint16, bool or float in [0, 1].
    size : int or None, default=None
        Resize every image to ``size x size`` (bicubic, see
        :func:`resize_images`). ``None`` keeps the size, which must then be the
        same for all images.
    mode : {"auto", "L", "RGB"}, default="auto"
        Channels for image files: ``"L"`` grayscale (1 channel), ``"RGB"``
        (3 channels, alpha dropped), ``"auto"`` grayscale when every file is
        grayscale, else RGB. Ignored for ``.npy`` files.
    return_names : bool, default=False
        Also return the file names (folder) or ``None`` (array).

    Returns
    -------
    images : ndarray of shape (n, C, H, W), float32
        Values in [0, 1].
    names : list of str or None
        Only when ``return_names=True``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skicr.datasets import load_images
    >>> tmp = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(tmp, np.zeros((5, 16, 16), dtype=np.uint8))
    >>> load_images(tmp).shape
    (5, 1, 16, 16)
    """
    if mode not in ("auto", "L", "RGB"):
        raise ValueError(f"mode must be 'auto', 'L' or 'RGB'; got {mode!r}.")
    if size is not None:
        size = _check_size(size)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}.")
    names = None
    if path.is_dir():
        images, names = _read_folder(path, mode, size)
    elif path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"could not read {str(path)!r} as a .npy array: {exc}") from exc
        images = _array_to_images(arr, repr(str(path)))
        if size is not None:
            images = resize_images(images, size)
    else:
        raise ValueError(
            f"{str(path)!r} is neither a folder of images nor a .npy file."
        )
    if return_names:
        return images, names
    return images


#: class names of :func:`make_shapes_images`, in label order
SHAPE_CLASSES = (
    "disc", "square", "triangle", "cross", "ring",
    "star", "half_disc", "bar", "l_shape", "frame",
)


def _shape_masks(label, x, y):
    """Inside-masks of shape ``label`` on local coordinates (object radius about 1)."""
    r = np.hypot(x, y)
    phi = np.arctan2(y, x)
    if label == 0:  # disc
        return r < 0.95
    if label == 1:  # square
        return np.maximum(np.abs(x), np.abs(y)) < 0.8
    if label == 2:  # equilateral triangle, circumradius 1
        sector = np.mod(phi + np.pi / 2, 2 * np.pi / 3) - np.pi / 3
        return r * np.cos(sector) < 0.5
    if label == 3:  # plus-shaped cross
        return ((np.abs(x) < 0.3) & (np.abs(y) < 0.95)) | ((np.abs(y) < 0.3) & (np.abs(x) < 0.95))
    if label == 4:  # ring
        return (r < 0.95) & (r > 0.55)
    if label == 5:  # five-pointed star
        wave = np.abs(np.mod(phi * 5 / (2 * np.pi), 1.0) - 0.5) * 2  # 1 at the points
        return r < 0.38 + 0.62 * wave**1.5
    if label == 6:  # half disc, centred on its area
        return (np.hypot(x, y + 0.4) < 0.95) & (y + 0.4 > 0)
    if label == 7:  # bar
        return (np.abs(x) < 0.95) & (np.abs(y) < 0.3)
    if label == 8:  # L shape
        return (((x > -0.8) & (x < -0.3)) & (np.abs(y) < 0.8)) | (
            (np.abs(x) < 0.8) & ((y > -0.8) & (y < -0.3))
        )
    if label == 9:  # hollow square
        m = np.maximum(np.abs(x), np.abs(y))
        return (m < 0.85) & (m > 0.5)
    raise ValueError(label)


def make_shapes_images(
    n_images=3000,
    image_size=32,
    *,
    random_state=0,
    clutter=2,
    texture=1.0,
    return_y=True,
):
    """A seeded labelled set of RGB images of 10 shapes under nuisance factors.

    Each image shows one object whose *shape* is the class (disc, square,
    triangle, cross, ring, star, half disc, bar, L shape, hollow square;
    ``SHAPE_CLASSES``), drawn bright, with a random position, scale, rotation and
    colour, over a darker random background texture (two coloured sinusoidal gratings
    plus pixel noise) with ``clutter`` small distractor blobs. None of these
    factors carries the class: a good representation should ignore them.
    Rendered with 2x2 supersampling (anti-aliased edges), vectorised in numpy;
    nothing is shipped or downloaded, and the same ``random_state`` gives the
    same images. Classes are exactly balanced (``n_images`` a multiple of 10)
    or within one image.

    Parameters
    ----------
    n_images : int, default=3000
        Number of images (>= 10).
    image_size : int, default=32
        Height and width (>= 8).
    random_state : int or numpy.random.Generator, default=0
        Seed of every random draw.
    clutter : int, default=2
        Distractor blobs per image (small discs of random colour; >= 0).
    texture : float, default=1.0
        Amplitude of the background texture relative to the default (0 gives
        flat backgrounds; >= 0).
    return_y : bool, default=True
        Also return the class labels.

    Returns
    -------
    images : ndarray of shape (n_images, 3, image_size, image_size), float32
        Values in [0, 1].
    y : ndarray of shape (n_images,), int64
        Shape labels 0..9 (names in ``SHAPE_CLASSES``); only when
        ``return_y=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.datasets import SHAPE_CLASSES, make_shapes_images
    >>> images, y = make_shapes_images(n_images=100, image_size=16)
    >>> images.shape, images.dtype
    ((100, 3, 16, 16), dtype('float32'))
    >>> np.bincount(y).tolist(), SHAPE_CLASSES[y[0]] in SHAPE_CLASSES
    ([10, 10, 10, 10, 10, 10, 10, 10, 10, 10], True)
    """
    for name, value, minimum in [("n_images", n_images, 10), ("image_size", image_size, 8),
                                 ("clutter", clutter, 0)]:
        if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    if isinstance(texture, bool) or not isinstance(texture, (Integral, float)) or not texture >= 0:
        raise ValueError(f"texture must be a float >= 0; got {texture!r}.")
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    n, size, n_classes = int(n_images), int(image_size), len(SHAPE_CLASSES)
    y = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    fine = 2 * size  # 2x2 supersampling
    grid = (np.arange(fine, dtype=np.float32) + 0.5) / fine * 2 - 1
    gy, gx = np.meshgrid(grid, grid, indexing="ij")  # (fine, fine) in [-1, 1]

    # background: a base colour plus two coloured sinusoidal gratings and pixel noise
    base = rng.uniform(0.05, 0.5, size=(n, 3, 1, 1)).astype(np.float32)
    image = np.broadcast_to(base, (n, 3, fine, fine)).copy()
    for _ in range(2):
        freq, angle, phase = (rng.uniform(low, high, size=(n, 1, 1)).astype(np.float32)
                              for low, high in ((np.pi, 4 * np.pi), (0, np.pi), (0, 2 * np.pi)))
        wave = np.sin(freq * (np.cos(angle) * gx + np.sin(angle) * gy) + phase)
        colour = rng.uniform(-0.15, 0.15, size=(n, 3, 1, 1)).astype(np.float32)
        image += np.float32(texture) * colour * wave[:, None]
    image += np.float32(texture) * rng.normal(0, 0.04, size=image.shape).astype(np.float32)

    # distractors: small discs anywhere, random colours
    for _ in range(int(clutter)):
        cx, cy = rng.uniform(-0.95, 0.95, size=(2, n, 1, 1)).astype(np.float32)
        radius = rng.uniform(0.05, 0.12, size=(n, 1, 1)).astype(np.float32)
        inside = (gx - cx) ** 2 + (gy - cy) ** 2 < radius**2
        colour = rng.uniform(0, 1, size=(n, 3, 1, 1)).astype(np.float32)
        image = np.where(inside[:, None], colour, image)

    # the object: rotation, scale and position on local coordinates
    theta = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
    scale = rng.uniform(0.35, 0.6, size=(n, 1, 1)).astype(np.float32)
    cx, cy = rng.uniform(-0.3, 0.3, size=(2, n, 1, 1)).astype(np.float32)
    dx, dy = gx - cx, gy - cy
    lx = (np.cos(theta) * dx + np.sin(theta) * dy) / scale
    ly = (-np.sin(theta) * dx + np.cos(theta) * dy) / scale
    mask = np.zeros((n, fine, fine), dtype=bool)
    for label in range(n_classes):
        rows = np.flatnonzero(y == label)
        mask[rows] = _shape_masks(label, lx[rows], ly[rows])
    # a bright object of random hue on a darker background: its outline is always visible
    colour = rng.uniform(0.55, 1.0, size=(n, 3, 1, 1)).astype(np.float32)
    image = np.where(mask[:, None], colour, image)

    image = image.reshape(n, 3, size, 2, size, 2).mean(axis=(3, 5))
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    if return_y:
        return image, y
    return image


# ------------------------------------------------------------------------------------------
# Datasets as users store them, read one image at a time (DataLoader workers decode them)
# ------------------------------------------------------------------------------------------
def _check_mode(mode):
    if mode not in ("auto", "L", "RGB"):
        raise ValueError(f"mode must be 'auto', 'L' or 'RGB'; got {mode!r}.")
    return mode


class _ImageItems(torch.utils.data.Dataset):
    """Shared behaviour: items ``image`` or ``(image, label)``, images float32 (C, H, W) in [0, 1]."""

    #: class labels, one per image (int64), or None when the data carries none
    targets = None
    #: class names in label order, or None
    classes = None

    def _finish(self, image, index):
        """Resize to ``size``, or check the common size; the item with its label."""
        if self.size is not None:
            if image.shape[1:] != (self.size, self.size):
                image = resize_images(image[None], self.size)[0]
        elif self._image_size is None:
            self._image_size = image.shape[1:]
        elif image.shape[1:] != self._image_size:
            raise ValueError(
                f"image {index} ({self._describe(index)}) is {image.shape[2]}x{image.shape[1]} "
                f"but the first one is {self._image_size[1]}x{self._image_size[0]}; pass "
                "size=... to resize them all."
            )
        image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        if self.targets is None:
            return image
        return image, int(self.targets[index])

    def _describe(self, index):
        return f"item {index}"

    def _check_index(self, index):
        if not isinstance(index, Integral) or isinstance(index, bool):
            raise TypeError(f"index must be an int; got {type(index).__name__}.")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images.")
        return int(index) % n


class ImageFolderDataset(_ImageItems):
    """Image files in a folder: a class-per-folder tree (labels) or a flat folder.

    A folder whose subfolders hold images is a class tree, as
    torchvision's ``ImageFolder`` reads it (ImageNet's own layout):
    each subfolder is a class (labels ``0..K-1`` in sorted folder-name order,
    ``classes`` lists the names), its images are found recursively. A
    folder that holds the image files itself is a flat folder (no labels).
    Files are listed once (names only); each item is decoded when it is read,
    so a :class:`torch.utils.data.DataLoader` with ``num_workers`` decodes
    and resizes in its worker processes and no more than a batch of images
    is ever held.

    Parameters
    ----------
    root : str or Path
        The folder.
    size : int or None, default=None
        Resize every image to ``size x size`` (bicubic,
        :func:`resize_images`). None keeps the size, which must then be the
        same for all images (a clear error names the first that differs).
    mode : {"auto", "L", "RGB"}, default="auto"
        Channels: ``"L"`` grey, ``"RGB"`` colour (alpha dropped); ``"auto"``
        takes the first image's kind (grey if it is grey) for all.

    Attributes
    ----------
    files : list of Path
        The image files, in item order (class by class for a tree, each
        sorted by path).
    targets : ndarray of shape (n_images,) or None
        Labels (int64) for a class tree; None for a flat folder.
    classes : list of str or None
        Class (subfolder) names in label order; None for a flat folder.
    mode_ : {"L", "RGB"}
        The channel mode used.

    See Also
    --------
    open_image_dataset : Any stored dataset (folder, array, Hugging Face) by path.
    image_loader : A DataLoader over a dataset (sharded under torch.distributed).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from skicr.datasets import ImageFolderDataset
    >>> root = tempfile.mkdtemp()
    >>> for name in ("cat", "dog"):
    ...     os.makedirs(os.path.join(root, name))
    ...     for i in range(2):
    ...         Image.fromarray(np.zeros((8, 8), np.uint8)).save(
    ...             os.path.join(root, name, f"{i}.png"))
    >>> data = ImageFolderDataset(root)
    >>> len(data), data.classes, data.targets.tolist()
    (4, ['cat', 'dog'], [0, 0, 1, 1])
    >>> image, label = data[2]
    >>> tuple(image.shape), label
    ((1, 8, 8), 1)
    """

    def __init__(self, root, *, size=None, mode="auto"):
        self.root = Path(root)
        self.size = None if size is None else _check_size(size)
        self.mode = _check_mode(mode)
        if not self.root.is_dir():
            raise FileNotFoundError(f"no such folder: {str(self.root)!r}.")
        top_files = _image_files(self.root)
        subfolders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        tree = {}
        for folder in subfolders:
            files = sorted(
                p for p in folder.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            )
            if files:
                tree[folder.name] = files
        if tree and top_files:
            raise ValueError(
                f"{str(self.root)!r} holds image files ({top_files[0].name}, ...) and class "
                f"subfolders with images ({next(iter(tree))}/, ...); use a flat folder of images "
                "or a class-per-folder tree, not both."
            )
        if tree:
            self.classes = list(tree)
            self.files = [path for name in self.classes for path in tree[name]]
            self.targets = np.concatenate(
                [np.full(len(tree[name]), k, dtype=np.int64) for k, name in enumerate(self.classes)]
            )
        elif top_files:
            self.files = top_files
        else:
            raise ValueError(
                f"no images found in folder {str(self.root)!r} or its subfolders "
                f"(looked for {', '.join(IMAGE_EXTENSIONS)})."
            )
        self._image_size = None
        self.mode_ = self.mode
        if self.mode == "auto":
            first = _open_image(self.files[0])
            self.mode_ = "L" if first.mode in _GREY_MODES else "RGB"

    def __len__(self):
        return len(self.files)

    def _describe(self, index):
        return str(self.files[index])

    def __getitem__(self, index):
        index = self._check_index(index)
        return self._finish(_pil_to_array(_open_image(self.files[index]), self.mode_), index)


_ARRAY_IMAGE_KEYS = ("images", "image", "x", "X", "arr_0")
_ARRAY_LABEL_KEYS = ("labels", "label", "y", "targets")


class ArrayImageDataset(_ImageItems):
    """Images of an array or a ``.npy`` / ``.npz`` file, read one at a time.

    A ``.npy`` file is memory-mapped (``np.load(mmap_mode="r")``): only the
    images read are in memory, whatever the file's size. In a ``.npz`` the
    images are the array named ``images`` (or ``image``, ``x``, ``X``,
    ``arr_0``) and the labels, if any, the array named ``labels`` (or
    ``label``, ``y``, ``targets``); a ``.npz`` member cannot be memory-mapped,
    so its image array is read whole (store large data as ``.npy``).
    Layouts and dtypes are those of :func:`load_images`.

    Parameters
    ----------
    source : str, Path or ndarray
        A ``.npy`` or ``.npz`` file, or an array of images.
    labels : array-like of shape (n_images,) or None, default=None
        Class labels (they override those of a ``.npz``).
    size : int or None, default=None
        Resize every image to ``size x size``.

    Attributes
    ----------
    targets : ndarray of shape (n_images,) or None
        Labels (int64), or None.

    See Also
    --------
    open_image_dataset : Any stored dataset by path.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skicr.datasets import ArrayImageDataset
    >>> path = os.path.join(tempfile.mkdtemp(), "images.npz")
    >>> np.savez(path, images=np.zeros((6, 8, 8, 3), np.uint8), labels=np.arange(6) % 2)
    >>> data = ArrayImageDataset(path)
    >>> image, label = data[3]
    >>> tuple(image.shape), label
    ((3, 8, 8), 1)
    """

    def __init__(self, source, *, labels=None, size=None):
        self.size = None if size is None else _check_size(size)
        self._image_size = None
        stored_labels = None
        if isinstance(source, (str, Path)):
            path = Path(source)
            self._source = repr(str(path))
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {str(path)!r}.")
            suffix = path.suffix.lower()
            try:
                if suffix == ".npy":
                    array = np.load(path, mmap_mode="r", allow_pickle=False)
                elif suffix == ".npz":
                    with np.load(path, allow_pickle=False) as archive:
                        image_key = next((k for k in _ARRAY_IMAGE_KEYS if k in archive.files), None)
                        if image_key is None:
                            raise ValueError(
                                f"it holds {archive.files} but no images array (one of "
                                f"{list(_ARRAY_IMAGE_KEYS)})"
                            )
                        array = archive[image_key]
                        label_key = next((k for k in _ARRAY_LABEL_KEYS if k in archive.files), None)
                        if label_key is not None:
                            stored_labels = archive[label_key]
                else:
                    raise ValueError("it is not a .npy or .npz file")
            except ValueError as exc:
                raise ValueError(f"could not read {str(path)!r} as images: {exc}.") from None
        else:
            self._source = "the array"
            array = np.asarray(source)
        if array.ndim not in (3, 4) or array.shape[0] == 0:
            raise ValueError(
                f"{self._source} must hold images of shape (n, H, W), (n, C, H, W) or (n, H, W, C); "
                f"got {array.shape}."
            )
        self.array = array
        labels = stored_labels if labels is None else labels
        if labels is not None:
            labels = np.asarray(labels).ravel()
            if labels.shape[0] != array.shape[0]:
                raise ValueError(f"{labels.shape[0]} labels for {array.shape[0]} images in {self._source}.")
            if not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"labels must be integers; got dtype {labels.dtype}.")
            self.targets = labels.astype(np.int64)

    def __len__(self):
        return int(self.array.shape[0])

    def __getitem__(self, index):
        index = self._check_index(index)
        image = _array_to_images(np.asarray(self.array[index:index + 1]), f"{self._source} (image {index})")[0]
        return self._finish(image, index)


def _hf_datasets():
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(
            "reading a Hugging Face dataset needs the datasets package: pip install 'skicr[hf]'."
        ) from exc
    return datasets


class HFImageDataset(_ImageItems):
    """Images (and labels) of a Hugging Face ``datasets`` dataset stored on disk.

    Reads a folder written by ``Dataset.save_to_disk`` (or a ``DatasetDict``'s,
    with ``split``), one ``.parquet`` or ``.arrow`` file, or a folder of them.
    The table is memory-mapped by ``datasets`` (Arrow); images are decoded
    one item at a time. Needs the optional ``datasets`` package
    (``pip install 'skicr[hf]'``); nothing is downloaded.

    Parameters
    ----------
    source : str, Path or datasets.Dataset
        The folder or file, or a loaded ``datasets.Dataset``.
    split : str or None, default=None
        The split of a saved ``DatasetDict`` (required when it has several).
    image_column : str or None, default=None
        The column of images; None takes the first column of the ``Image``
        feature type, else one named ``image``, ``img`` or ``pixel_values``.
    label_column : str or None, default=None
        The column of class labels; None takes a ``ClassLabel`` column, else
        one named ``label`` or ``labels``, else no labels.
    size : int or None, default=None
        Resize every image to ``size x size``.
    mode : {"auto", "L", "RGB"}, default="auto"
        Channels of decoded images; ``"auto"``: the first image's kind.

    Attributes
    ----------
    dataset : datasets.Dataset
        The table.
    targets : ndarray of shape (n_images,) or None
        Labels (int64), or None.
    classes : list of str or None
        Names of a ``ClassLabel`` column, else None.

    See Also
    --------
    open_image_dataset : Any stored dataset by path.

    Examples
    --------
    >>> import numpy as np
    >>> import datasets
    >>> from skicr.datasets import HFImageDataset
    >>> table = datasets.Dataset.from_dict(
    ...     {"image": [np.zeros((8, 8), np.uint8)] * 4, "label": [0, 1, 0, 1]},
    ...     features=datasets.Features({"image": datasets.Image(),
    ...                                 "label": datasets.ClassLabel(names=["a", "b"])}))
    >>> data = HFImageDataset(table)
    >>> image, label = data[1]
    >>> tuple(image.shape), label, data.classes
    ((1, 8, 8), 1, ['a', 'b'])
    """

    def __init__(self, source, *, split=None, image_column=None, label_column=None, size=None,
                 mode="auto"):
        datasets = _hf_datasets()
        self.size = None if size is None else _check_size(size)
        self.mode = _check_mode(mode)
        self._image_size = None
        table = source if isinstance(source, datasets.Dataset) else self._load(datasets, source, split)
        self.dataset = table
        features = table.features
        if image_column is None:
            image_column = next((name for name, feature in features.items()
                                 if isinstance(feature, datasets.Image)), None)
            if image_column is None:
                image_column = next((n for n in ("image", "img", "pixel_values") if n in features), None)
            if image_column is None:
                raise ValueError(
                    f"the dataset has no image column (columns {list(features)}); pass image_column=..."
                )
        elif image_column not in features:
            raise ValueError(f"image_column {image_column!r} is not one of {list(features)}.")
        self.image_column = image_column
        if label_column is None:
            label_column = next((name for name, feature in features.items()
                                 if isinstance(feature, datasets.ClassLabel)), None)
            if label_column is None:
                label_column = next((n for n in ("label", "labels") if n in features), None)
        elif label_column not in features:
            raise ValueError(f"label_column {label_column!r} is not one of {list(features)}.")
        self.label_column = label_column
        if label_column is not None:
            labels = np.asarray(table.with_format("numpy", columns=[label_column])[label_column])
            if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(
                    f"the label column {label_column!r} must hold one integer per image; got "
                    f"dtype {labels.dtype}, shape {labels.shape}."
                )
            self.targets = labels.astype(np.int64)
            feature = features[label_column]
            if isinstance(feature, datasets.ClassLabel):
                self.classes = list(feature.names)
        if len(table) == 0:
            raise ValueError("the dataset holds no images.")
        self.mode_ = self.mode
        if self.mode == "auto":
            first = self._raw(0)
            self.mode_ = "L" if (getattr(first, "mode", None) in _GREY_MODES or (
                not hasattr(first, "mode") and np.asarray(first).ndim == 2)) else "RGB"

    @staticmethod
    def _load(datasets, source, split):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {str(path)!r}.")
        files = [path] if path.is_file() else sorted(
            p for p in path.iterdir() if p.suffix in (".parquet", ".arrow"))
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
            table = datasets.load_from_disk(str(path))
        elif files and files[0].suffix == ".parquet":
            table = datasets.Dataset.from_parquet([str(p) for p in files])
        elif files:
            table = datasets.concatenate_datasets([datasets.Dataset.from_file(str(p)) for p in files])
        else:
            raise ValueError(
                f"{str(path)!r} is not a Hugging Face dataset: no save_to_disk folder "
                "(dataset_dict.json or state.json), no .parquet or .arrow files."
            )
        if isinstance(table, datasets.DatasetDict):
            if split is None:
                if len(table) != 1:
                    raise ValueError(
                        f"{str(path)!r} holds the splits {list(table)}; pass split=... to choose one."
                    )
                split = next(iter(table))
            if split not in table:
                raise ValueError(f"split {split!r} is not one of {list(table)}.")
            table = table[split]
        return table

    def __len__(self):
        return len(self.dataset)

    def _raw(self, index):
        return self.dataset[int(index)][self.image_column]

    def __getitem__(self, index):
        index = self._check_index(index)
        value = self._raw(index)
        if hasattr(value, "convert"):  # a decoded PIL image
            image = _pil_to_array(value, self.mode_)
        else:
            image = _array_to_images(np.asarray(value)[None], f"image {index} of the dataset")[0]
        return self._finish(image, index)


def open_image_dataset(source, *, size=None, mode="auto", labels=None, split=None):
    """A dataset of images as users store them, read one image at a time.

    Parameters
    ----------
    source : str, Path, ndarray or torch.utils.data.Dataset
        - a folder of class subfolders (labels from the folder names, as
          torchvision's ``ImageFolder``) or a flat folder of image files:
          :class:`ImageFolderDataset`;
        - a ``.npy`` (memory-mapped) or ``.npz`` file, or an array:
          :class:`ArrayImageDataset`;
        - a Hugging Face ``datasets`` folder written by ``save_to_disk``, a
          ``.parquet`` / ``.arrow`` file or a folder of them:
          :class:`HFImageDataset` (needs ``datasets``);
        - any torch ``Dataset`` (returned as it is): its items must be images,
          or tuples whose first element is the image and second the label.
    size : int or None, default=None
        Resize every image to ``size x size`` (files and arrays).
    mode : {"auto", "L", "RGB"}, default="auto"
        Channels of decoded image files.
    labels : array-like or None, default=None
        Labels of an array or ``.npy`` file (one int per image).
    split : str or None, default=None
        The split of a saved Hugging Face ``DatasetDict``.

    Returns
    -------
    dataset : torch.utils.data.Dataset
        Items ``image`` or ``(image, label)``; images float32 ``(C, H, W)`` in
        [0, 1]; a ``targets`` attribute holds the labels when known.

    See Also
    --------
    image_loader : A DataLoader over the dataset.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.datasets import open_image_dataset
    >>> data = open_image_dataset(np.zeros((5, 16, 16), np.uint8), labels=np.arange(5))
    >>> len(data), tuple(data[0][0].shape)
    (5, (1, 16, 16))
    """
    if isinstance(source, (np.ndarray, torch.Tensor)):
        array = source.numpy() if isinstance(source, torch.Tensor) else source
        return ArrayImageDataset(array, labels=labels, size=size)
    if isinstance(source, torch.utils.data.Dataset) or (
        not isinstance(source, (str, Path)) and hasattr(source, "__getitem__")
        and hasattr(source, "__len__")
    ):
        return source  # a map-style dataset (torch's, or anything indexable with a length)
    if not isinstance(source, (str, Path)):
        raise TypeError(
            f"expected a path, an array or a dataset (indexable, with a length); got "
            f"{type(source).__name__}."
        )
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}.")
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix in (".npy", ".npz"):
            return ArrayImageDataset(path, labels=labels, size=size)
        if suffix in (".parquet", ".arrow"):
            return HFImageDataset(path, split=split, size=size, mode=mode)
        raise ValueError(
            f"{str(path)!r} is not a folder of images, a .npy/.npz array or a Hugging Face "
            ".parquet/.arrow file."
        )
    if labels is not None:
        raise ValueError("labels= applies to arrays; a folder tree gives its labels by folder name.")
    hf_markers = ("dataset_dict.json", "state.json", "dataset_info.json")
    if any((path / name).exists() for name in hf_markers) or (
        not _image_files(path) and any(p.suffix in (".parquet", ".arrow") for p in path.iterdir())
    ):
        return HFImageDataset(path, split=split, size=size, mode=mode)
    return ImageFolderDataset(path, size=size, mode=mode)


def image_loader(dataset, *, batch_size=256, num_workers=0, distributed="auto"):
    """A DataLoader over an image dataset, in order; one shard per process when distributed.

    Under ``torch.distributed`` each rank reads its shard through a
    :class:`~torch.utils.data.distributed.DistributedSampler` (no shuffle);
    the streaming fits and scans of :mod:`skicr.streaming` number every image
    by its dataset index and drop the sampler's padding duplicates, so all
    ranks together see each image once.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        E.g. from :func:`open_image_dataset`.
    batch_size : int, default=256
        Images per loader batch.
    num_workers : int, default=0
        DataLoader worker processes that read, decode and resize images.
    distributed : {"auto", True, False}, default="auto"
        Shard across the processes; ``"auto"``: when ``torch.distributed``
        is initialised with more than one process.

    Returns
    -------
    loader : torch.utils.data.DataLoader
        Yields ``images`` or ``[images, labels]`` batches in dataset order
        (within each rank's shard).

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.datasets import image_loader, open_image_dataset
    >>> loader = image_loader(open_image_dataset(np.zeros((10, 8, 8), np.uint8)), batch_size=4)
    >>> [tuple(batch.shape) for batch in loader]
    [(4, 1, 8, 8), (4, 1, 8, 8), (2, 1, 8, 8)]
    """
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from ._utils.distributed import resolve_distributed

    for name, value, minimum in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    distributed, _, world_size = resolve_distributed(distributed)
    sampler = DistributedSampler(dataset, shuffle=False) if distributed and world_size > 1 else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      persistent_workers=False)
