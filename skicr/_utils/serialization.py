"""Weights-only safe archives: modules, metadata and statistics that ``torch.load(weights_only=True)`` reads.

Pickling torch modules without pickling their weights: a module is stored as a weightless skeleton (the same module structure with
every parameter and buffer on the ``meta`` device, so it pickles without
data) plus its tensors serialised with :func:`torch.save` to bytes. Loading
reads the tensors back with ``torch.load(weights_only=True)``, which cannot
run arbitrary code, then fills the skeleton.
"""

import copy
import hashlib
import io
import os
import warnings
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
    "atomic_write_text",
    "CONTENT_HASH_KEY",
    "UnverifiedFileWarning",
    "content_digest",
    "seal",
    "verify_seal",
    "check_output_dir",
    "check_output_file",
    "read_torch_file",
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
    """``torch.save`` to ``path`` through a temporary file, so an interrupt never leaves half a file.

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
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:  # an interrupt or a full disk mid-write leaves no stray temporary file
        tmp.unlink(missing_ok=True)


def atomic_write_text(text, path):
    """Write a text file through a temporary name and ``os.replace``: never half a file.

    Parameters
    ----------
    text : str
        The content.
    path : str or os.PathLike
        Destination.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------- integrity
#: the key under which a sealed file stores the SHA-256 of the rest of its content
CONTENT_HASH_KEY = "content_hash"


class UnverifiedFileWarning(UserWarning):
    """A file was loaded without an integrity check: it stores no content hash.

    Files written by skicr before content hashes existed load as before; this
    warning says that a corrupted copy could not have been detected. Saving
    the file again with the current skicr adds the hash.
    """


def _feed(hasher, value):
    # a canonical walk: the same content gives the same bytes whatever the dict order
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.numel():  # an empty tensor's reshape has stride 0 and cannot be viewed as bytes
            hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        hasher.update(f"A{array.dtype.str}{array.shape}".encode())
        hasher.update(array.tobytes())
    elif isinstance(value, dict):
        hasher.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            _feed(hasher, key)
            _feed(hasher, value[key])
    elif isinstance(value, (list, tuple)):
        hasher.update(f"L{len(value)}".encode())
        for item in value:
            _feed(hasher, item)
    elif isinstance(value, str):
        data = value.encode()
        hasher.update(f"S{len(data)}:".encode() + data)
    elif value is None or isinstance(value, (bool, Integral, Real)):
        hasher.update(f"V{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"cannot hash a {type(value).__name__} (plain data and tensors only).")


def content_digest(value):
    """SHA-256 of plain data and tensors, independent of dict order and of the file format.

    Parameters
    ----------
    value : object
        Dicts, lists, str, numbers, None, torch tensors and numpy arrays.

    Returns
    -------
    digest : str
        Hexadecimal SHA-256 of the tensors' dtypes, shapes and bytes and of the
        plain values.
    """
    hasher = hashlib.sha256()
    _feed(hasher, value)
    return hasher.hexdigest()


def seal(payload):
    """A copy of a dict with the content hash of its other entries under :data:`CONTENT_HASH_KEY`.

    Parameters
    ----------
    payload : dict
        What will be saved.

    Returns
    -------
    sealed : dict
    """
    body = {key: value for key, value in payload.items() if key != CONTENT_HASH_KEY}
    return {**body, CONTENT_HASH_KEY: content_digest(body)}


def verify_seal(payload, path, what="file"):
    """Check a loaded dict against its stored content hash.

    Parameters
    ----------
    payload : dict
        What ``torch.load`` returned.
    path : str or os.PathLike
        The file, for the messages.
    what : str, default="file"
        What the file is ("weights file", "checkpoint"), for the messages.

    Returns
    -------
    body : dict
        ``payload`` without the hash.

    Raises
    ------
    ValueError
        If the stored hash does not match the content (corrupted or edited file).

    Warns
    -----
    UnverifiedFileWarning
        If the file stores no hash (written by an older skicr).
    """
    body = {key: value for key, value in payload.items() if key != CONTENT_HASH_KEY}
    stored = payload.get(CONTENT_HASH_KEY)
    if stored is None:
        warnings.warn(
            f"{str(path)!r} stores no content hash (written by an older skicr), so its integrity "
            f"cannot be checked; save the {what} again to add one.",
            UnverifiedFileWarning, stacklevel=3,
        )
        return body
    try:
        actual = content_digest(body)
    except TypeError:
        actual = None
    if actual != stored:
        raise ValueError(
            f"The {what} {str(path)!r} is corrupted or was edited: its content does not match "
            "the content hash stored in it. Use an intact copy."
        )
    return body


def read_torch_file(path, what="file"):
    """``torch.load(path, weights_only=True)`` on the CPU, failures as one-line ValueErrors.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    what : str, default="file"
        What the file should be, for the message ("skicr weights file").

    Returns
    -------
    payload : object
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated, non-torch and foreign-class files
        text = " ".join(str(exc).split())
        try:
            with open(path, "rb") as handle:
                header = handle.read(4)
        except OSError:
            header = b""
        if not (header.startswith(b"PK") or header.startswith(b"\x80")):  # zip or pickle
            reason = "it is not a torch file (neither a zip archive nor a pickle)"
        elif "Weights only load failed" in text:
            found = text.split("WeightsUnpickler error:", 1)[-1].strip()
            reason = (f"it holds Python objects that a safe load refuses "
                      f"({found.split('. ')[0].rstrip('.')[:160]})")
        elif "zip archive" in text or "central directory" in text:
            reason = "it is not a torch file, or it is truncated"
        else:
            reason = text[:200]
        raise ValueError(f"could not read {str(path)!r} as a {what}: {reason}.") from exc


# ------------------------------------------------------------- output locations
def _probe_directory(folder, what, path):
    probe = folder / f".skicr-write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ValueError(
            f"{what} {str(path)!r} cannot be written: {exc.strerror or exc} in {str(folder)!r}."
        ) from None


def _existing_ancestor(path, what, original):
    current = path
    while not current.exists():
        if current.parent == current:
            break
        current = current.parent
    if not current.is_dir():
        raise ValueError(
            f"{what} {str(original)!r} cannot be created: {str(current)!r} is a file, not a folder."
        )
    return current


def check_output_dir(path, what="output folder"):
    """Check, before any work, that a folder exists or can be created and is writable.

    Nothing is created: the nearest existing ancestor must be a writable
    folder (tested by writing and removing a small file, which also catches
    read-only mounts and paths that even root cannot create).

    Parameters
    ----------
    path : str or os.PathLike
        The folder.
    what : str, default="output folder"
        Its name in the message (``"--out"``).

    Returns
    -------
    path : Path

    Raises
    ------
    ValueError
        With one line saying why the folder cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} exists and is not a folder.")
    _probe_directory(_existing_ancestor(path, what, path), what, path)
    return path


def check_output_file(path, what="output file"):
    """Check, before any work, that a file can be written (its folder exists or can be created).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    what : str, default="output file"
        Its name in the message (``"checkpoint"``).

    Returns
    -------
    path : Path

    Raises
    ------
    ValueError
        With one line saying why the file cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder, not a file.")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ValueError(f"{what} {str(path)!r} is not writable.")
        return path
    _probe_directory(_existing_ancestor(path.parent, what, path), what, path)
    return path
