"""Read NVlabs EDM snapshot pickles without running the code they carry.

An EDM ``network-snapshot-*.pkl`` (and the released ``edm-*.pkl`` files) is
a plain pickle of a dict (``ema``, ``loss_fn``, ``augment_pipe``,
``dataset_kwargs``). Every network module in it is a
``torch_utils.persistence`` object: its reduce call is
``_reconstruct_persistent_obj(meta)``, where ``meta`` holds the full source
text of the defining module (``module_src``), the class name, and the
object's ``__dict__`` (parameters, buffers, submodules and the constructor's
keyword arguments ``_init_kwargs``). The official loader executes that
source. This reader never does:

- :class:`_RestrictedUnpickler` resolves only the globals of an explicit
  allow-list (``ALLOWED_GLOBALS``): torch's tensor-rebuild functions,
  plain containers, torch's module containers and numpy's scalar / dtype /
  array reconstructors under their numpy 1.x and 2.x names. Each is mapped
  to a data-only stand-in (or a torch function that only builds tensors);
  any other global, ``os.system`` or ``builtins.exec`` alike, raises
  :class:`UnsafePickleError` naming it.
- ``_reconstruct_persistent_obj`` becomes ``PersistentRecord``: it
  keeps the class name and state and discards ``module_src`` unread.
- Tensor storages, embedded in torch's legacy format, are read with
  ``torch.load(..., weights_only=True)`` (torch's own restricted
  unpickler), not with the ``weights_only=False`` the original global uses.

The network is then rebuilt from skicr's own implementations
(:class:`~skicr.models.PrecondEDM` with :class:`~skicr.models.SongUNet` or
:class:`~skicr.models.DhariwalUNet`, ...) from the recorded keyword
arguments, every recorded class name is checked against the rebuilt module
tree, and the tensors are loaded with ``load_state_dict(strict=True)``.
Written for skicr from the documented pickle layout; no NVlabs code is used.
"""

import collections
import io
import os
import pickle

import numpy as np
import torch
from torch import nn

from . import _dhariwal_unet, _edm_blocks, _song_unet
from ._edm_precond import PrecondEDM, PrecondIDDPM, PrecondVE, PrecondVP

__all__ = [
    "UnsafePickleError",
    "PersistentRecord",
    "ALLOWED_GLOBALS",
    "EDM_PICKLE_CLASSES",
    "read_edm_pickle",
    "load_edm_pickle",
]

_PERSISTENCE_VERSION = 6  # torch_utils.persistence format of every EDM release


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asks for a global outside the EDM reader's allow-list."""


class PersistentRecord:
    """Data-only stand-in for one ``torch_utils.persistence`` object.

    Attributes
    ----------
    class_name : str
        Class name recorded in the pickle (``"EDMPrecond"``, ``"UNetBlock"``...).
    state : dict
        The object's recorded ``__dict__``.
    version : int
        ``torch_utils.persistence`` format version.
    """

    __slots__ = ("class_name", "state", "version")

    def __init__(self, meta):
        if not isinstance(meta, dict):
            raise pickle.UnpicklingError(
                f"persistent-object metadata must be a dict; got {type(meta).__name__}."
            )
        if meta.get("type") != "class":
            raise pickle.UnpicklingError(
                f"unsupported persistent-object type {meta.get('type')!r} (expected 'class')."
            )
        self.class_name = str(meta.get("class_name"))
        self.version = meta.get("version")
        state = meta.get("state")
        self.state = dict(state) if isinstance(state, dict) else {}
        # meta["module_src"] (the embedded source) is dropped here, never read

    @property
    def init_kwargs(self):
        """Recorded constructor keyword arguments (dict)."""
        return dict(self.state.get("_init_kwargs") or {})

    def __repr__(self):
        return f"PersistentRecord({self.class_name!r})"


class _ContainerRecord:
    """Data-only stand-in for torch's ``ModuleDict`` / ``ModuleList`` / ``Sequential``."""

    class_name = None

    def __setstate__(self, state):
        self.state = dict(state) if isinstance(state, dict) else {}

    def __repr__(self):
        return f"{self.class_name}Record()"


def _container(name):
    return type(f"_{name}Record", (_ContainerRecord,), {"class_name": name})


def _storage_from_bytes(data):
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("a tensor storage must be a bytes blob.")
    return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)


_NUMERIC_KINDS = "biufc"


def _numpy_dtype(name, align=False, copy=True):
    dtype = np.dtype(str(name))
    if dtype.kind not in _NUMERIC_KINDS:
        raise UnsafePickleError(f"numpy dtype {name!r} is not a plain numeric dtype.")
    return dtype


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS \
            or not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("numpy scalars must be plain numbers.")
    return np.frombuffer(bytes(data), dtype=dtype)[0].item()


def _numpy_reconstruct(cls, shape, typecode):
    if cls is not np.ndarray:
        raise UnsafePickleError("numpy arrays must be plain numpy.ndarray.")
    return np.ndarray.__new__(np.ndarray, shape, typecode)


#: (module, name) pairs the reader resolves, and what it resolves them to.
ALLOWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentRecord,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch.nn.modules.container", "ModuleDict"): _container("ModuleDict"),
    ("torch.nn.modules.container", "ModuleList"): _container("ModuleList"),
    ("torch.nn.modules.container", "Sequential"): _container("Sequential"),
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves the allow-list and nothing else."""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: not one of the tensor, container "
                "and numpy reconstructors an EDM snapshot needs. The file is not a plain EDM "
                "pickle (or carries code); nothing was executed."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("EDM pickles have no persistent ids; refusing this file.")


def read_edm_pickle(path):
    """Read an EDM pickle into plain data, running none of its code.

    Parameters
    ----------
    path : str or os.PathLike or file object
        An NVlabs EDM snapshot pickle.

    Returns
    -------
    snapshot : object
        Usually a dict (``ema``, ``loss_fn``, ``augment_pipe``,
        ``dataset_kwargs``) whose persistent objects are
        ``PersistentRecord`` instances.

    Raises
    ------
    UnsafePickleError
        If the pickle refers to a global outside ``ALLOWED_GLOBALS``.
    """
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as handle:
            return _RestrictedUnpickler(handle).load()
    return _RestrictedUnpickler(path).load()


#: Release class names the reader rebuilds, and skicr's implementation of each.
EDM_PICKLE_CLASSES = {
    "EDMPrecond": PrecondEDM,
    "VPPrecond": PrecondVP,
    "VEPrecond": PrecondVE,
    "iDDPMPrecond": PrecondIDDPM,
    "SongUNet": _song_unet.SongUNet,
    "DhariwalUNet": _dhariwal_unet.DhariwalUNet,
    "UNetBlock": _edm_blocks.UNetBlock,
    "Conv2d": _edm_blocks.Conv2d,
    "Linear": _edm_blocks.Linear,
    "GroupNorm": _edm_blocks.GroupNorm,
    "PositionalEmbedding": _edm_blocks.PositionalEmbedding,
    "FourierEmbedding": _edm_blocks.FourierEmbedding,
    "ModuleDict": nn.ModuleDict,
    "ModuleList": nn.ModuleList,
    "Sequential": nn.Sequential,
}
_WRAPPERS = ("EDMPrecond", "VPPrecond", "VEPrecond", "iDDPMPrecond")


def _unsupported(name, where):
    supported = ", ".join(_WRAPPERS)
    return ValueError(
        f"EDM pickle: class {name!r} at {where} is not supported by skicr's EDM reader "
        f"(networks: {supported}; raw models: SongUNet, DhariwalUNet)."
    )


def _collect_tensors(record, module, prefix, out):
    """Walk the record tree next to ``module``, checking class names, gathering tensors."""
    where = prefix.rstrip(".") or "the top level"
    name = record.class_name
    expected = EDM_PICKLE_CLASSES.get(name)
    if expected is None:
        raise _unsupported(name, where)
    if type(module) is not expected:
        raise ValueError(
            f"EDM pickle: {where} is a {name} in the file but skicr built a "
            f"{type(module).__name__} there from the recorded arguments; the file does not "
            "match the released architectures."
        )
    state = record.state
    persistent_skip = set(state.get("_non_persistent_buffers_set") or ())
    for key in ("_parameters", "_buffers"):
        for tensor_name, tensor in (state.get(key) or {}).items():
            if tensor is None or (key == "_buffers" and tensor_name in persistent_skip):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"EDM pickle: {prefix}{tensor_name} is not a tensor.")
            out[prefix + tensor_name] = tensor.detach()
    children = dict(module.named_children())
    for child_name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, (PersistentRecord, _ContainerRecord)):
            raise ValueError(
                f"EDM pickle: submodule {prefix}{child_name} is a {type(child).__name__}, "
                "not a persistent module."
            )
        if child_name not in children:
            raise ValueError(
                f"EDM pickle: the file has a submodule {prefix}{child_name} "
                f"({child.class_name}) that skicr's {type(module).__name__} does not."
            )
        _collect_tensors(child, children[child_name], f"{prefix}{child_name}.", out)


def _as_network_record(snapshot, key):
    if isinstance(snapshot, PersistentRecord):
        return snapshot
    if not isinstance(snapshot, dict):
        raise ValueError(
            f"EDM pickle must hold a dict snapshot or a network; got {type(snapshot).__name__}."
        )
    if key not in snapshot:
        raise ValueError(f"EDM snapshot has no {key!r} entry; it has {sorted(snapshot)}.")
    record = snapshot[key]
    if not isinstance(record, PersistentRecord):
        raise ValueError(
            f"EDM snapshot entry {key!r} is a {type(record).__name__}, not a persistent network."
        )
    return record


def load_edm_pickle(path, *, key="ema", device=None):
    """Load the network of an NVlabs EDM pickle into skicr's implementation.

    Nothing from the file is executed (see ``skicr.models._edm_pickle``):
    the recorded class names and constructor arguments select and build
    skicr's own modules, and the stored tensors are loaded with
    ``strict=True``.

    Parameters
    ----------
    path : str or os.PathLike or file object
        An EDM snapshot pickle (``edm-cifar10-32x32-uncond-vp.pkl``,
        ``network-snapshot-*.pkl``, ...).
    key : str, default="ema"
        Entry of the snapshot dict holding the network.
    device : str or torch.device or None, default=None
        Where to put the network (CPU when None).

    Returns
    -------
    net : PrecondEDM, PrecondVP, PrecondVE or PrecondIDDPM
        In eval mode with ``requires_grad`` off, called as
        ``net(x, sigma, class_labels=None)``.

    Raises
    ------
    UnsafePickleError
        If the file refers to a global outside the allow-list.
    ValueError
        If a recorded class is not supported (the message names it) or the
        tensors do not fit the rebuilt network.
    """
    record = _as_network_record(read_edm_pickle(path), key)
    name = record.class_name
    if name not in _WRAPPERS:
        raise _unsupported(name, f"entry {key!r}")
    if record.version != _PERSISTENCE_VERSION:
        raise ValueError(
            f"EDM pickle: persistence format version {record.version!r}; skicr reads version "
            f"{_PERSISTENCE_VERSION} (every EDM release)."
        )
    args = record.state.get("_init_args")
    if args:
        raise ValueError(
            f"EDM pickle: {name} was built with positional arguments {args!r}; skicr reads "
            "keyword arguments only (as the EDM training code records them)."
        )
    if "_init_kwargs" not in record.state or record.state["_init_kwargs"] is None:
        raise ValueError(f"EDM pickle: {name} has no recorded constructor arguments.")
    kwargs = record.init_kwargs
    try:
        net = EDM_PICKLE_CLASSES[name](**kwargs)
    except TypeError as exc:
        raise ValueError(
            f"EDM pickle: cannot build {name} from the recorded arguments {kwargs}: {exc}"
        ) from exc
    tensors = {}
    _collect_tensors(record, net, "", tensors)
    net.load_state_dict(tensors, strict=True)
    net.eval().requires_grad_(False)
    if device is not None:
        net.to(device)
    return net
