"""Alias of :mod:`skicr._utils.images`, the one image check (old import path)."""

from .._utils.images import ImageBatches, check_images  # noqa: F401
