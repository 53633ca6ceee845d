"""Lazy re-exports (PEP 562): a package's public names imported from their home on first use.

``import skicr`` stays cheap, ``skicr track``'s parser loads without the
monitoring package's heavier imports, and a package can re-export names of a
package that builds on it (``skicr.extraction.fit_from_loader`` from
:mod:`skicr.streaming`) without either needing the other at import time.
"""

import importlib

__all__ = ["lazy_exports"]


def lazy_exports(package, names, *, submodules=()):
    """The module ``__getattr__`` and ``__dir__`` of a package with lazily imported names.

    Parameters
    ----------
    package : str
        The package's ``__name__`` (the name in error messages, and the anchor
        of relative module names).
    names : dict of str to str
        Public name -> module that defines it, absolute (``"skicr.metrics"``)
        or relative to ``package`` (``"._turning_point"``).
    submodules : sequence of str, default=()
        Submodules of ``package`` that are attributes too (``skicr.models``).

    Returns
    -------
    getattr_ : callable
        The package's ``__getattr__``.
    dir_ : callable
        The package's ``__dir__``: its ``__all__`` (the public names, lazy
        ones included).

    Examples
    --------
    In a package ``__init__``::

        __getattr__, __dir__ = lazy_exports(__name__, {"ICRMonitor": "._monitor"})
    """
    names = dict(names)
    submodules = tuple(submodules)

    def getattr_(name):
        if name in names:
            return getattr(importlib.import_module(names[name], package), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_():
        return list(vars(importlib.import_module(package))["__all__"])

    return getattr_, dir_
