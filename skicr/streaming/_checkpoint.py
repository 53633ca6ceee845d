"""The checkpoint format of streamed statistics: what was accumulated, with which settings.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` reads
(format ``skicr.streaming.v1``): the settings' fingerprint, the base seed, the
number of batches consumed, a hash of their content and the statistics'
state dict.
"""

from pathlib import Path

import torch

from .._utils.serialization import atomic_torch_save, tensor_state
from ..metrics import GroupedViewStatistics

__all__ = []

_CHECKPOINT_FORMAT = "skicr.streaming.v1"


def _describe(value):
    if value is None or isinstance(value, str):
        return str(value)
    text = repr(value)
    if " at 0x" in text:  # functions and plain objects: the name, not the address
        return f"{type(value).__module__}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return text


def _fingerprint(extractor, *, mode, rank, world_size):
    """Settings the accumulated statistics depend on (plain types)."""
    module = extractor.backbone_.module
    n_parameters, total = 0, 0.0
    with torch.no_grad():
        for parameter in module.parameters():
            n_parameters += parameter.numel()
            total += float(parameter.detach().double().sum())
    fingerprint = {
        "backbone": f"{type(extractor.backbone_).__name__}({type(module).__name__})",
        "n_parameters": n_parameters,
        # rounded: a sum over the weights on another device may differ in the last digits
        "parameter_sum": f"{total:.6g}",
        "layer": extractor.layer_,
        "sigma": float(extractor.sigma),
        "n_views": int(extractor.n_views),
        "n_features": int(extractor.n_features_out_),
        "augment": _describe(extractor.augment),
        "pooling": _describe(extractor.pooling),
        "precision": extractor.precision,
        "image_indices": mode,
        "rank": rank,
        "world_size": world_size,
    }
    augment = extractor.augment
    if callable(augment) and type(augment).__module__.split(".")[0] != "skicr":
        # a plain augmentation callable is seeded per chunk: chunks must match
        fingerprint["batch_size"] = int(extractor.batch_size)
    return fingerprint


def _rank_path(path, rank, world_size):
    path = Path(path)
    if world_size > 1:
        path = path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
    return path


def _save_checkpoint(path, *, fingerprint, base_seed, n_batches, digest, statistics, complete):
    state = {
        "format": _CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "base_seed": int(base_seed),
        "n_batches": int(n_batches),
        "digest": digest,
        "complete": bool(complete),
        "statistics": tensor_state(statistics.state_dict()),
    }
    atomic_torch_save(state, path)  # a kill never leaves a half-written checkpoint


def _load_checkpoint(path):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"Could not read the checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a skicr streaming checkpoint ({_CHECKPOINT_FORMAT}).")
    state["statistics"] = GroupedViewStatistics.from_state_dict({
        key: value.numpy() if isinstance(value, torch.Tensor) else value
        for key, value in state["statistics"].items()
    })
    return state


def _check_fingerprint(path, saved, current):
    differences = [
        f"{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
    if differences:
        raise ValueError(
            f"The checkpoint {path} was accumulated with other settings; "
            + "; ".join(differences)
            + ". Use the original settings, or another checkpoint path to start over."
        )
