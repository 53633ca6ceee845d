"""Saving and loading denoiser weights; the weights shipped with skicr.

A weights file is a plain dict readable by ``torch.load(weights_only=True)``::

    {"format": "skicr.SmallUNet", "version": 1,
     "config": {...SmallUNet kwargs...},
     "state_dict": {name: tensor},
     "metadata": {...how it was trained...},
     "content_hash": "<sha256>"}

The last entry is the SHA-256 of the others (tensors' bytes included), checked
on load: a corrupted or edited file is refused with an error naming it. Files
written before content hashes existed load with an
:class:`UnverifiedFileWarning`.
"""

import warnings
from pathlib import Path

import torch

from .._utils.serialization import UnverifiedFileWarning, read_torch_file, seal
from .._utils.serialization import plain_metadata as _plain
from .._utils.serialization import atomic_torch_save, verify_seal
from ._unet import SmallUNet

__all__ = ["PRETRAINED", "save_denoiser", "load_denoiser", "load_pretrained",
           "UnverifiedFileWarning", "is_weights_file", "read_weights_file"]

_FORMAT = "skicr.SmallUNet"
_VERSION = 1
_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: name -> (file in skicr/models/weights/, description)
PRETRAINED = {
    "digits": (
        "digits.pt",
        "SmallUNet trained on sklearn's digits at 16x16 "
        "(python -m skicr.models.train, see docs/models.md)",
    ),
}


def save_denoiser(net, path, metadata=None, dtype=torch.float32):
    """Save a :class:`SmallUNet` as a plain dict of its config and weights.

    Parameters
    ----------
    net : SmallUNet
        The network to save (usually the EMA network).
    path : str or Path
        Output file; parent folders are created.
    metadata : dict or None, default=None
        Plain data (str, int, float, bool, lists, dicts of these) describing
        how the weights were made; stored under ``"metadata"``.
    dtype : torch.dtype, default=torch.float32
        Storage dtype of floating-point weights (``torch.float16`` halves the
        file; :func:`load_denoiser` casts back to float32).

    Returns
    -------
    path : Path
        The written file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import torch
    >>> from skicr.models import SmallUNet, load_denoiser, save_denoiser
    >>> net = SmallUNet(channels=(8, 16), mid_channels=16)
    >>> path = Path(tempfile.mkdtemp()) / "net.pt"
    >>> _ = save_denoiser(net, path, metadata={"step": 100})
    >>> loaded, metadata = load_denoiser(path, return_metadata=True)
    >>> metadata["step"]
    100
    >>> all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
    ...                                       loaded.state_dict().values()))
    True
    """
    if not isinstance(net, SmallUNet):
        raise TypeError(f"save_denoiser saves a SmallUNet; got {type(net).__name__}.")
    state = {
        k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()).clone()
        for k, v in net.state_dict().items()
    }
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "config": dict(net.config),
        "state_dict": state,
        "metadata": _plain(dict(metadata or {})),
    }
    path = Path(path)
    atomic_torch_save(seal(payload), path)
    return path


def load_denoiser(path, device=None, return_metadata=False):
    """Load a weights file written by :func:`save_denoiser` (or ``python -m skicr.models.train``).

    Parameters
    ----------
    path : str or Path
        The ``.pt`` file. Read with ``torch.load(weights_only=True)``: no code
        is executed.
    device : str, torch.device or None, default=None
        Where to put the network; ``None`` means the CPU.
    return_metadata : bool, default=False
        Also return the stored metadata dict.

    Returns
    -------
    net : SmallUNet
        The raw network ``F`` in eval mode, float32.
    metadata : dict
        Only when ``return_metadata=True``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from skicr.models import SmallUNet, load_denoiser, save_denoiser
    >>> path = Path(tempfile.mkdtemp()) / "net.pt"
    >>> _ = save_denoiser(SmallUNet(channels=(8, 16), mid_channels=16), path)
    >>> type(load_denoiser(path)).__name__
    'SmallUNet'
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {str(path)!r}.")
    # a note about the file (no content hash) is worth giving only for a file that loads:
    # held back until the network is built, dropped when an error says more
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", UnverifiedFileWarning)
        payload = read_weights_file(path)
        try:
            net = SmallUNet(**payload["config"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{str(path)!r} has an invalid SmallUNet config: {exc}") from None
        state = {
            k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()
        }
        _check_state_dict(net, state, path)
        net.load_state_dict(state)
    for note in notes:
        warnings.warn(note.message, note.category, stacklevel=2)
    net.to(torch.device(device) if device is not None else "cpu").eval()
    if return_metadata:
        return net, dict(payload.get("metadata", {}))
    return net


def is_weights_file(payload):
    """Whether a loaded object is a skicr weights file's dict (any version, sealed or not).

    Parameters
    ----------
    payload : object
        What ``torch.load`` returned.

    Returns
    -------
    bool
    """
    return isinstance(payload, dict) and payload.get("format") == _FORMAT


def read_weights_file(path, payload=None):
    """The checked content of a skicr weights file: format, version, structure and content hash.

    Parameters
    ----------
    path : str or Path
        The file.
    payload : dict or None, default=None
        Its content when already loaded (read from ``path`` otherwise).

    Returns
    -------
    payload : dict
        ``format``, ``version``, ``config``, ``state_dict`` and ``metadata``.

    Raises
    ------
    ValueError
        One line naming the file: not a torch file, not a skicr weights file,
        another version, a missing or mistyped entry, or a content hash that
        does not match (a corrupted or edited file).
    """
    if payload is None:
        payload = read_torch_file(path, "skicr weights file")
    if not is_weights_file(payload):
        raise ValueError(
            f"{str(path)!r} is not a skicr denoiser weights file "
            f"(expected a dict with format={_FORMAT!r}, as skicr.models.save_denoiser writes)."
        )
    if payload.get("version") != _VERSION:
        raise ValueError(
            f"{str(path)!r} has weights format version {payload.get('version')!r}; "
            f"this skicr reads version {_VERSION}."
        )
    payload = verify_seal(payload, path, "weights file")
    expected = {"config": dict, "state_dict": dict}
    for key, kind in expected.items():
        if not isinstance(payload.get(key), kind):
            raise ValueError(
                f"{str(path)!r} is a damaged skicr weights file: {key!r} is missing or not a dict."
            )
    bad = [k for k, v in payload["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{str(path)!r}: state_dict entries that are not tensors: {bad[:5]}.")
    return payload


def _check_state_dict(net, state, path):
    """Keys and shapes of a state dict against the network, as one line."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s) ({', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) ({', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"wrong shapes: {'; '.join(wrong[:3])}")
    if problems:
        raise ValueError(
            f"The weights in {str(path)!r} do not match its SmallUNet config: "
            + ", ".join(problems) + "."
        )


def load_pretrained(name="digits", device=None, return_metadata=False):
    """Load a denoiser shipped inside skicr, by name.

    Parameters
    ----------
    name : str, default="digits"
        One of ``skicr.models.PRETRAINED``: ``"digits"`` is a
        :class:`SmallUNet` (about 0.8M parameters) trained on sklearn's
        handwritten digits at 16x16 by ``python -m skicr.models.train`` (EMA
        weights; see ``docs/models.md``).
    device : str, torch.device or None, default=None
        Where to put the network; ``None`` means the CPU.
    return_metadata : bool, default=False
        Also return how the weights were trained (command, seed, losses).

    Returns
    -------
    net : SmallUNet
        The raw EDM network ``F`` in eval mode: call it as
        ``net(c_in * x, c_noise)``, or wrap it as ``EDMPrecond(net)`` for
        ``D(x; sigma)``. Its bottleneck is ``net.mid``.
    metadata : dict
        Only when ``return_metadata=True``.

    Examples
    --------
    >>> from skicr.models import load_pretrained
    >>> net = load_pretrained("digits")
    >>> net.training
    False
    """
    if not isinstance(name, str) or name not in PRETRAINED:
        raise ValueError(
            f"unknown pretrained denoiser {name!r}; available: {sorted(PRETRAINED)}. "
            "Load your own weights file with skicr.models.load_denoiser(path)."
        )
    path = _WEIGHTS_DIR / PRETRAINED[name][0]
    if not path.is_file():
        raise FileNotFoundError(
            f"the weights file of {name!r} is missing from the installation ({path}); "
            "reinstall skicr or rebuild it with `python -m skicr.models.train`."
        )
    return load_denoiser(path, device=device, return_metadata=return_metadata)
