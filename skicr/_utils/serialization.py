"""Weights-only safe archives: modules, metadata and statistics that ``torch.load(weights_only=True)`` reads.

Pickling torch modules without pickling their weights: a module is stored as a weightless skeleton (the same module structure with
every parameter and buffer on the ``meta`` device, so it pickles without
data) plus its tensors serialised with :func:`torch.save` to bytes. Loading
reads the tensors back with ``torch.load(weights_only=True)``, which cannot
run arbitrary code, then fills the skeleton.
"""

import copy
import io
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "ModuleArchive",
    "archive_modules",
    "restore_modules",
    "plain_metadata",
    "tensor_state",
    "atomic_torch_save",
]


def _named_tensors(module):
    # every parameter and buffer, non-persistent buffers included, shared ones once
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(module.named_buffers(remove_duplicate=False))
    return tensors


def _module_device(module):
    for tensor in _named_tensors(module).values():
        return tensor.device
    return torch.device("cpu")


class ModuleArchive:
    """A module's structure (weightless) and its weights as ``torch.save`` bytes.

    Parameters
    ----------
    module : torch.nn.Module
        The module to store.
    """

    def __init__(self, module):
        memo = {}
        for tensor in _named_tensors(module).values():
            if id(tensor) in memo:
                continue
            meta = torch.empty_like(tensor, device="meta")
            if isinstance(tensor, nn.Parameter):
                meta = nn.Parameter(meta, requires_grad=tensor.requires_grad)
            memo[id(tensor)] = meta
        # the pre-filled memo makes deepcopy reuse the meta tensors: no weight copy
        self.skeleton = copy.deepcopy(module, memo)
        self.device = str(_module_device(module))
        buffer = io.BytesIO()
        torch.save(
            {name: t.detach().cpu() for name, t in _named_tensors(module).items()},
            buffer,
        )
        self.weights = buffer.getvalue()

    def restore(self, device=None):
        """Rebuild the module with its weights.

        Parameters
        ----------
        device : str or torch.device or None, default=None
            Where to put it; None restores the original device when it is
            available here and the CPU otherwise.

        Returns
        -------
        module : torch.nn.Module
        """
        if device is None:
            device = torch.device(self.device)
            if device.type == "cuda" and not torch.cuda.is_available():
                device = torch.device("cpu")
        tensors = torch.load(io.BytesIO(self.weights), map_location="cpu", weights_only=True)
        module = copy.deepcopy(self.skeleton).to_empty(device=device)
        targets = _named_tensors(module)
        missing = set(targets) - set(tensors)
        if missing:
            raise ValueError(f"Stored weights lack tensors {sorted(missing)[:5]}.")
        with torch.no_grad():
            for name, value in tensors.items():
                targets[name].copy_(value)
        return module


def archive_modules(state):
    """Replace every ``nn.Module`` value of a dict by a :class:`ModuleArchive`.

    Parameters
    ----------
    state : dict

    Returns
    -------
    state : dict
        A shallow copy.
    """
    archives = {}  # id(module) -> archive, so a module referenced twice is stored once
    out = {}
    for key, value in state.items():
        if isinstance(value, nn.Module):
            if id(value) not in archives:
                archives[id(value)] = ModuleArchive(value)
            value = archives[id(value)]
        out[key] = value
    return out


def restore_modules(state):
    """Inverse of :func:`archive_modules`, in place.

    Parameters
    ----------
    state : dict

    Returns
    -------
    state : dict
    """
    restored = {}
    for key, value in list(state.items()):
        if isinstance(value, ModuleArchive):
            if id(value) not in restored:
                restored[id(value)] = value.restore()
            state[key] = restored[id(value)]
    return state


# ------------------------------------------------------------- plain values
def plain_metadata(value, where="metadata"):
    """Copy of ``value`` made of the plain types ``torch.load(weights_only=True)`` accepts.

    Parameters
    ----------
    value : object
        str, int, float, bool, None, and lists and dicts of them.
    where : str, default="metadata"
        Name of ``value`` in error messages.

    Returns
    -------
    value : object
        The same value in built-in types (str subclasses, numpy scalars and
        tuples converted).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)  # str subclasses (torch.__version__) are not plain
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, dict):
        return {plain_metadata(k, where): plain_metadata(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_metadata(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where} must hold only str, int, float, bool, None, lists and dicts; "
        f"got {type(value).__name__}."
    )


def tensor_state(state):
    """``state`` (a dict) with numpy arrays as tensors and numpy scalars as Python numbers.

    What ``torch.load(weights_only=True)`` reads back.
    """
    def plain(value):
        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.array(value))
        if isinstance(value, np.generic):
            return value.item()
        return value

    return {key: plain(value) for key, value in state.items()}


def atomic_torch_save(state, path):
    """``torch.save`` to ``path`` through a temporary file, so a kill never leaves half a file.

    Parameters
    ----------
    state : object
        What to save.
    path : str or os.PathLike
        Destination (its folder is created).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
