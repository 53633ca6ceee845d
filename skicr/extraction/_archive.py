"""Alias of :mod:`skicr._utils.serialization`: pickles written before the move name this module."""

from .._utils.serialization import ModuleArchive, archive_modules, restore_modules  # noqa: F401
