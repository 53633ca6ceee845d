"""Alias of :mod:`skicr.extraction.backbones` (the adapters' old module): old pickles name it."""

from .backbones import *  # noqa: F401,F403
from .backbones import __all__  # noqa: F401
from .backbones._vp import _VPMixin  # noqa: F401
