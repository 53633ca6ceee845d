"""torch.distributed helpers: the collective device, the group's rank and size, seed broadcast.

torch is imported inside the functions: the numerical core (skicr.metrics)
imports this module and must not need torch.
"""

__all__ = ["collective_device", "resolve_distributed", "broadcast_seed"]


def collective_device(group=None):
    """Device that ``torch.distributed`` collectives of ``group`` need their tensors on.

    NCCL only moves CUDA tensors: the current CUDA device (set it per process
    with ``torch.cuda.set_device(local_rank)``). Every other backend (gloo,
    MPI, and the CPU half of a ``"cpu:gloo,cuda:nccl"`` group) takes CPU
    tensors.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup or None, default=None
        Process group; the default group when None.

    Returns
    -------
    device : torch.device
        ``cuda:<current>`` for an NCCL group, else ``cpu``.
    """
    import torch
    import torch.distributed as dist

    if str(dist.get_backend(group)).lower() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_distributed(distributed, group=None):
    """Whether to run across processes, and this process's rank and the world size.

    Parameters
    ----------
    distributed : {"auto", True, False}
        ``"auto"``: when ``torch.distributed`` is initialised.
    group : torch.distributed.ProcessGroup or None, default=None
        Process group; the default group when None.

    Returns
    -------
    distributed : bool
    rank : int
    world_size : int
    """
    import torch.distributed as dist

    if distributed not in ("auto", True, False):
        raise ValueError(f"distributed must be 'auto', True or False; got {distributed!r}.")
    initialised = dist.is_available() and dist.is_initialized()
    if distributed == "auto":
        distributed = initialised
    if distributed and not initialised:
        raise RuntimeError(
            "distributed=True but torch.distributed is not initialised; call "
            "torch.distributed.init_process_group first (torchrun sets up the environment)."
        )
    if not distributed:
        return False, 0, 1
    return True, dist.get_rank(group), dist.get_world_size(group)


def broadcast_seed(seed, group=None):
    """The group's first rank's ``seed``, on every rank.

    Parameters
    ----------
    seed : int
        This rank's seed.
    group : torch.distributed.ProcessGroup or None, default=None
        Process group; the default group when None.

    Returns
    -------
    seed : int
    """
    import torch
    import torch.distributed as dist

    value = torch.tensor([seed], dtype=torch.int64, device=collective_device(group))
    dist.broadcast(value, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    return int(value.item())
