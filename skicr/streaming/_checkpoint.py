"""The checkpoint format of streamed statistics: what was accumulated, with which settings.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` reads
(format ``skicr.streaming.v1``): the settings' fingerprint, the base seed, the
number of batches consumed, a hash of their content, the statistics' state
dict and the SHA-256 of all of that (``content_hash``), checked on load. On
load the structure is validated too (keys, types, counts, array shapes), so a
corrupted or edited checkpoint is an error naming the file, never silently
wrong statistics.
"""

import hashlib
from numbers import Integral
from pathlib import Path

import numpy as np
import torch

from .._utils.distributed import broadcast_seed, resolve_distributed
from .._utils.serialization import (
    atomic_torch_save,
    check_output_file,
    read_torch_file,
    seal,
    tensor_state,
    verify_seal,
)
from .._utils.validation import check_int
from ..metrics import GroupedViewStatistics
from ._loader import _stream

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
    atomic_torch_save(seal(state), path)  # a kill never leaves a half-written checkpoint


#: the entries of a checkpoint and the type each must have
_ENTRIES = {"fingerprint": dict, "base_seed": Integral, "n_batches": Integral,
            "digest": (str, type(None)), "complete": bool, "statistics": dict}
#: more images than this per consumed batch cannot come from a real loader
_MAX_IMAGES_PER_BATCH = 10**7
_TEMPLATE_D = 7


def _damaged(path, problem):
    return ValueError(
        f"The checkpoint {str(path)!r} is damaged or was edited: {problem}. Delete it to start over."
    )


def _check_statistics(path, stats, n_batches):
    """The statistics' counts and arrays: types, ranges and shapes that fit together."""
    for key in ("n_features", "n_views", "n_images"):
        if key not in stats:
            raise _damaged(path, f"statistics lack {key!r}")
    n_images = stats["n_images"]
    if not isinstance(n_images, Integral) or isinstance(n_images, bool) or n_images < 0:
        raise _damaged(path, f"statistics n_images is {n_images!r}, not a count >= 0")
    if n_images > n_batches * _MAX_IMAGES_PER_BATCH:
        raise _damaged(path, f"statistics n_images = {n_images} cannot come from {n_batches} batches")
    if n_images == 0:
        return
    d, views = stats["n_features"], stats["n_views"]
    for name, value in (("n_features", d), ("n_views", views)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise _damaged(path, f"statistics {name} is {value!r}, not a positive int")
    # the entries a real accumulator has, from a small one: d is _TEMPLATE_D there
    template = GroupedViewStatistics(_TEMPLATE_D, 2).state_dict()
    for key, reference in template.items():
        if key in ("n_features", "n_views", "n_images", "fourth_moments"):
            continue  # fourth_moments: absent from checkpoints written before the option
        if key not in stats:
            raise _damaged(path, f"statistics lack {key!r}")
        value = stats[key]
        if isinstance(reference, np.ndarray):
            expected = tuple(int(d) if size == _TEMPLATE_D else size for size in reference.shape)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
                shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
                raise _damaged(path, f"statistics {key!r} has shape {shape}, not {expected}")
            if not torch.isfinite(value).all():
                raise _damaged(path, f"statistics {key!r} holds NaN or infinity")
        elif isinstance(reference, (int, float)) and not isinstance(reference, bool):
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or not np.isfinite(value)):
                raise _damaged(path, f"statistics {key!r} is {value!r}, not a finite number")


def _load_checkpoint(path):
    state = read_torch_file(path, "skicr streaming checkpoint")
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a skicr streaming checkpoint ({_CHECKPOINT_FORMAT}).")
    state = verify_seal(state, path, "checkpoint")
    for key, kind in _ENTRIES.items():
        if key not in state:
            raise _damaged(path, f"the entry {key!r} is missing")
        value = state[key]
        if not isinstance(value, kind) or (kind is Integral and isinstance(value, bool)):
            raise _damaged(path, f"{key!r} is a {type(value).__name__}")
    if state["n_batches"] < 0:
        raise _damaged(path, f"n_batches = {state['n_batches']} is negative")
    _check_statistics(path, state["statistics"], state["n_batches"])
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



def _draw_seed(extractor):
    """The base seed ``extractor`` draws for a run (from its ``random_state``)."""
    from sklearn.utils import check_random_state

    return int(check_random_state(extractor.random_state).randint(np.iinfo(np.int32).max))


def _resolve_base_seed(extractor, state, path, distributed, group):
    """The run's base seed: drawn from the extractor, the checkpoint's when unseeded, rank 0's."""
    if isinstance(extractor.random_state, Integral):
        base_seed = _draw_seed(extractor)
    else:
        # None or a RandomState: one seed for the whole stream, the checkpoint's on resume
        base_seed = state["base_seed"] if state is not None else _draw_seed(extractor)
        if distributed:
            base_seed = broadcast_seed(base_seed, group)
    if state is not None and state["base_seed"] != base_seed:
        raise ValueError(
            f"The checkpoint {path} was accumulated with base seed {state['base_seed']} but the "
            f"extractor now gives {base_seed} (another random_state?)."
        )
    return base_seed


class _CheckpointedStream:
    """A stream of loader batches into statistics, saved to a checkpoint and resumed from it.

    The one home of the checkpointed-stream loop that the drivers share
    (:func:`statistics_from_loader`, :func:`fold_statistics_from_loader`).
    Construction settles the process (rank, world size), the rank's
    checkpoint path (checked for writing now, not after hours of
    extraction), the loaded checkpoint (``load(path)``, None for a fresh
    run) and the base seed. :meth:`run` continues the stream.
    """

    def __init__(self, extractor, checkpoint, *, load, distributed, group, progress, checkpoint_every):
        check_int("checkpoint_every", checkpoint_every, 1)
        self.extractor, self.checkpoint_every = extractor, checkpoint_every
        self.distributed, self.rank, self.world_size = resolve_distributed(distributed, group)
        self.progress = (extractor.progress if progress is None else progress) and self.rank == 0
        self.path = None if checkpoint is None else _rank_path(checkpoint, self.rank, self.world_size)
        self.state = None
        if self.path is not None:
            check_output_file(self.path, "checkpoint")
            if self.path.exists():
                self.state = load(self.path)
        self.base_seed = _resolve_base_seed(extractor, self.state, self.path, self.distributed, group)

    def fingerprint(self, mode):
        """The settings' fingerprint, checked against the loaded checkpoint's."""
        fingerprint = _fingerprint(self.extractor, mode=mode, rank=self.rank, world_size=self.world_size)
        if self.state is not None:
            _check_fingerprint(self.path, self.state["fingerprint"], fingerprint)
        return fingerprint

    def run(self, loader, *, update, save, image_indices):
        """Feed every batch of ``loader`` not yet in the checkpoint to ``update``, saving on the way.

        ``update(number, item)`` adds a batch's :class:`LoaderViews` to the
        caller's statistics; ``save(path, fingerprint=..., base_seed=...,
        n_batches=..., digest=..., complete=...)`` writes them with the
        stream's position. The batches the checkpoint holds are read and
        checked against its digest, not extracted. With a checkpoint, saves
        happen

        - every ``checkpoint_every`` batches;
        - on an exception, unless it hit ``update`` itself (the statistics may
          be half-updated) or no new batch was read (the file holds it all);
        - at the end, marked complete, when new batches were read or the
          checkpoint was not marked complete yet (an interruption after the
          last batch). A complete checkpoint read to its end is not rewritten
          (nothing changed), and a run that read no batch writes none: an
          empty "complete" checkpoint would answer every later run with no
          images.

        Returns the number of batches the statistics now hold.
        """
        path, state = self.path, self.state
        n_batches = 0 if state is None else state["n_batches"]
        skip = n_batches
        digest = None if state is None else state["digest"]
        fingerprint = None

        def on_ready(mode):
            nonlocal fingerprint
            if path is not None:
                fingerprint = self.fingerprint(mode)

        def write(complete):
            save(path, fingerprint=fingerprint, base_seed=self.base_seed, n_batches=n_batches,
                 digest=digest, complete=complete)

        stream = _stream(
            self.extractor, loader, base_seed=self.base_seed, image_indices=image_indices, skip=skip,
            resume_digest=digest, hasher=None if path is None else hashlib.blake2b(digest_size=16),
            progress=self.progress, on_ready=on_ready,
        )
        updating = False
        try:
            for number, item, hasher in stream:
                updating = True
                update(number, item)
                n_batches += 1
                digest = None if hasher is None else hasher.hexdigest()
                updating = False
                if path is not None and n_batches % self.checkpoint_every == 0:
                    write(complete=False)
        except BaseException:
            if path is not None and fingerprint is not None and not updating and n_batches > skip:
                write(complete=False)
            raise
        already_complete = state is not None and state["complete"]
        if path is not None and fingerprint is not None and (n_batches > skip or not already_complete):
            write(complete=True)
        return n_batches
