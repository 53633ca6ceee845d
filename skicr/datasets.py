"""Images ready for the feature extractor: sklearn's digits and a user's own files.

Every loader returns float32 images of shape ``(n_images, n_channels, height,
width)`` with values in [0, 1], the layout :class:`skicr.FeatureExtractor`
and :func:`skicr.models.train_denoiser` take.
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


def _read_folder(folder, mode, size):
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow ships with matplotlib
        raise ImportError(
            "reading a folder of images needs Pillow: pip install pillow "
            "(or pass a .npy array instead)."
        ) from exc

    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ValueError(
            f"no images found in folder {str(folder)!r} "
            f"(looked for {', '.join(IMAGE_EXTENSIONS)})."
        )
    pil_images = []
    for path in files:
        try:
            with Image.open(path) as img:
                img.load()
                pil_images.append(img.copy())
        except Exception as exc:
            raise ValueError(f"could not read image {str(path)!r}: {exc}") from exc
    if mode == "auto":
        gray = {"1", "L", "LA", "I", "I;16", "F"}
        mode = "L" if all(img.mode in gray for img in pil_images) else "RGB"
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
    arrays = []
    for img in pil_images:
        if img.mode in ("I", "I;16", "F") and mode == "L":
            a = np.asarray(img, dtype=np.float32)
            a = a / 65535.0 if img.mode != "F" else a
            arrays.append(np.clip(a, 0, 1)[None])
            continue
        a = np.asarray(img.convert(mode), dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
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
