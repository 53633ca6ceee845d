"""Reading the seed paper's release files into skicr's networks and their adapters.

:func:`load_release_file` recognises an NVlabs EDM pickle (read by
:func:`~skicr.models.load_edm_pickle`, no code run) or a DiT / SiT state dict
(``torch.load(weights_only=True)``; training checkpoints give their ``ema``
weights), builds skicr's network and returns the matching adapter of
:mod:`skicr.extraction`. DiT and SiT files have identical layouts: the family
comes from ``arch`` or the file name, the sizes from the tensors.
"""

import argparse
import math
import pickle
import re
import zipfile
from pathlib import Path

import torch

from ..extraction import DiTReleaseBackbone, EDMBackbone, EDMReleaseBackbone, SiTReleaseBackbone
from ._dit import TRANSFORMER_CONFIGS, DiT, SiT
from ._edm_pickle import load_edm_pickle
from ._pretrained import _FORMAT as WEIGHTS_FORMAT
from ._pretrained import load_denoiser

__all__ = ["load_release_file"]

_ARCH_IN_NAME = re.compile(r"(DiT|SiT)-(XL|L|B|S)-(\d)", re.IGNORECASE)
_TRANSFORMER_KEYS = ("pos_embed", "x_embedder.proj.weight", "final_layer.linear.weight")


def _is_pickle_file(path):
    with open(path, "rb") as handle:
        head = handle.read(2)
    return head[:1] == b"\x80" and not zipfile.is_zipfile(path)


def _read_torch_file(path):
    """``torch.load(weights_only=True)`` of a zip checkpoint, memory-mapped (read on use)."""
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{str(path)!r} is neither an EDM pickle nor a torch checkpoint (.pt zip archive)."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        # train.py checkpoints also hold the argparse Namespace of the run
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _is_skicr_weights(payload):
    return isinstance(payload, dict) and payload.get("format") == WEIGHTS_FORMAT


def _state_dict_of(checkpoint, path):
    if isinstance(checkpoint, dict) and "ema" in checkpoint:
        checkpoint = checkpoint["ema"]  # a training checkpoint: the EMA weights, as sample.py
    elif isinstance(checkpoint, dict) and "model" in checkpoint and "pos_embed" not in checkpoint:
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict) or not all(k in checkpoint for k in _TRANSFORMER_KEYS):
        raise ValueError(
            f"{str(path)!r} is not a DiT / SiT state dict (no {_TRANSFORMER_KEYS[0]}, "
            f"{_TRANSFORMER_KEYS[1]}...)."
        )
    return checkpoint


def _resolve_arch(arch, path):
    """(family, named config or None) from ``arch`` or, failing that, the file name."""
    if arch is None:
        found = _ARCH_IN_NAME.search(Path(path).name)
        if found:
            family = "SiT" if found.group(1).lower() == "sit" else "DiT"
            return family, f"{family}-{found.group(2).upper()}/{found.group(3)}"
        lowered = Path(path).name.lower()
        if "sit" in lowered and "dit" not in lowered:
            return "SiT", None
        if "dit" in lowered and "sit" not in lowered:
            return "DiT", None
        raise ValueError(
            f"Cannot tell whether {Path(path).name!r} is a DiT or a SiT checkpoint (their state "
            "dicts have the same layout): pass arch='SiT-XL/2', arch='DiT-XL/2' (or 'SiT' / "
            "'DiT' to read the sizes from the file)."
        )
    text = str(arch)
    if text in ("SiT", "DiT"):
        return text, None
    match = re.match(r"^(DiT|SiT)-(XL|L|B|S)[/-](\d)$", text)
    if match is None:
        raise ValueError(
            f"arch must be a release name such as 'SiT-XL/2' or 'DiT-B/4', or 'SiT' / 'DiT'; "
            f"got {arch!r}."
        )
    return match.group(1), f"{match.group(1)}-{match.group(2)}/{match.group(3)}"


def _transformer_from_state(state, family, named, model_kwargs):
    pos = state["pos_embed"]
    proj = state["x_embedder.proj.weight"]
    hidden, patch, in_channels = int(pos.shape[-1]), int(proj.shape[-1]), int(proj.shape[1])
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    out_channels = int(state["final_layer.linear.weight"].shape[0]) // (patch * patch)
    inferred = dict(
        input_size=math.isqrt(int(pos.shape[1])) * patch,
        patch_size=patch,
        in_channels=in_channels,
        hidden_size=hidden,
        depth=depth,
        mlp_ratio=int(state["blocks.0.mlp.fc1.weight"].shape[0]) / hidden,
        # the releases train with label dropout 0.1: the last table row is the null class
        num_classes=int(state["y_embedder.embedding_table.weight"].shape[0]) - 1,
        class_dropout_prob=0.1,
        learn_sigma=out_channels == 2 * in_channels,
    )
    sizes = {width: (d, heads) for d, width, heads in TRANSFORMER_CONFIGS.values()}
    if named is not None:
        size = named.split("-")[1].split("/")[0]
        want_depth, want_hidden, heads = TRANSFORMER_CONFIGS[size]
        want_patch = int(named.split("/")[1])
        if (want_depth, want_hidden, want_patch) != (depth, hidden, patch):
            raise ValueError(
                f"The file holds a transformer of depth {depth}, width {hidden}, patch {patch}; "
                f"{named} has depth {want_depth}, width {want_hidden}, patch {want_patch}."
            )
        inferred["num_heads"] = heads
    elif hidden in sizes and sizes[hidden][0] == depth:
        inferred["num_heads"] = sizes[hidden][1]
    kwargs = {**inferred, **(model_kwargs or {})}
    if "num_heads" not in kwargs:
        raise ValueError(
            f"Width {hidden} and depth {depth} are not a released {family} size, so the number "
            "of attention heads is unknown: pass model_kwargs={'num_heads': ...}."
        )
    net = (SiT if family == "SiT" else DiT)(**kwargs)
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def load_release_file(path, arch=None, *, model_kwargs=None, class_label=None, vae=None,
                      latent_scale=1.0, device=None):
    """Load an EDM pickle or a DiT / SiT release file as a backbone adapter.

    This is what :func:`skicr.load_backbone` does with a file.

    Parameters
    ----------
    path : str or os.PathLike
        An NVlabs EDM pickle (``edm-cifar10-32x32-uncond-vp.pkl``, read
        without running its code), or a DiT / SiT state dict
        (``SiT-XL-2-256x256.pt``, or a ``train.py`` checkpoint, whose ``ema``
        weights are used).
    arch : str or None, default=None
        For DiT / SiT files: a release name (``"SiT-XL/2"``), or ``"SiT"`` /
        ``"DiT"`` to read every size from the file. None reads it from the
        file name (``SiT-XL-2-256x256.pt``). Ignored for EDM pickles (their
        architecture is recorded in them).
    model_kwargs : dict or None, default=None
        Constructor arguments overriding what is read from the file
        (``num_heads`` for a non-release width, ...).
    class_label : int or None, default=None
        Class to condition on; None is the null class of DiT / SiT, and
        required for class-conditional EDM networks.
    vae : diffusers.AutoencoderKL, path or None, default=None
        DiT / SiT: encoder from pixels to latents (a local diffusers
        ``AutoencoderKL`` folder such as ``sd-vae-ft-ema``). None: inputs are
        latents.
    latent_scale : float, default=1.0
        DiT / SiT without ``vae``: inputs in [0, 1] map to latents
        ``(2 x - 1) * latent_scale``.
    device : str or torch.device or None, default=None

    Returns
    -------
    backbone : EDMReleaseBackbone, SiTReleaseBackbone, DiTReleaseBackbone or EDMBackbone
        EDMBackbone for a skicr denoiser weights file.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        If the file is neither format, or does not match ``arch``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a file.")
    if _is_pickle_file(path):
        if vae is not None:
            raise ValueError("EDM networks work on pixels; vae must be None.")
        backbone = EDMReleaseBackbone(load_edm_pickle(path), class_label=class_label)
    elif _is_skicr_weights(payload := _read_torch_file(path)):
        backbone = EDMBackbone(load_denoiser(path))
    else:
        state = _state_dict_of(payload, path)
        family, named = _resolve_arch(arch, path)
        net = _transformer_from_state(state, family, named, model_kwargs)
        cls = SiTReleaseBackbone if family == "SiT" else DiTReleaseBackbone
        backbone = cls(net, vae=vae, class_label=class_label, latent_scale=latent_scale)
    if device is not None:
        backbone.to(device)
    return backbone
