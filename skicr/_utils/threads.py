"""Thread defaults: one home for how many torch and BLAS threads skicr uses.

The rule (measured by ``benchmarks/bench_threads.py``, written down in
``docs/scaling.md``): work made of many small operations gains nothing from
more threads and loses a lot when the cores are shared. Each small
convolution or matrix product is split across threads that then wait for each
other; when another process holds a core, every operation waits for the
descheduled thread (on 2 shared cores the default scan ran 21x slower than
with one thread, a decomposer fit at ``d = 64`` 23x slower). So:

* a network with fewer than :data:`SMALL_NETWORK_PARAMETERS` parameters runs
  with **one torch thread**; larger networks keep torch's default (all cores);
* matrices with fewer than :data:`SMALL_MATRIX_FEATURES` columns are handled
  with **one BLAS thread**; wider ones keep the BLAS default (all cores).

An explicit choice always wins: ``--threads`` on the command line, the
``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS``
environment variables, or a ``torch.set_num_threads`` call made before skicr
runs (the library only lowers the count while torch is still at the value it
had when skicr was imported).
"""

import os
from contextlib import contextmanager, nullcontext

import torch

__all__ = [
    "SMALL_MATRIX_FEATURES",
    "SMALL_NETWORK_PARAMETERS",
    "available_cores",
    "blas_threads",
    "network_threads",
    "one_blas_thread",
    "set_process_threads",
    "torch_threads",
    "user_chose_threads",
]

# below these sizes one thread is at least as fast on idle cores and far
# faster on shared ones (benchmarks/bench_threads.py)
SMALL_NETWORK_PARAMETERS = 5_000_000
SMALL_MATRIX_FEATURES = 1024

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_TORCH_THREADS_AT_IMPORT = torch.get_num_threads()


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS tells it).

    Returns
    -------
    cores : int
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def user_chose_threads():
    """Whether the user fixed the thread counts (environment or ``torch.set_num_threads``).

    Returns
    -------
    chosen : bool
    """
    return (any(os.environ.get(name) for name in _THREAD_VARIABLES)
            or torch.get_num_threads() != _TORCH_THREADS_AT_IMPORT)


def network_threads(module):
    """Torch threads for running ``module``: 1 when it is small, else all cores.

    Parameters
    ----------
    module : torch.nn.Module or None

    Returns
    -------
    threads : int
    """
    if module is None:
        return available_cores()
    parameters = sum(p.numel() for p in module.parameters())
    return 1 if parameters < SMALL_NETWORK_PARAMETERS else available_cores()


@contextmanager
def torch_threads(threads):
    """Run the block with ``threads`` torch intra-op threads, then restore the count.

    ``None`` leaves the count alone; nothing is changed either when the user
    fixed the threads (:func:`user_chose_threads`) or when ``threads`` is not
    below the current count (the library only ever lowers it).

    Parameters
    ----------
    threads : int or None
    """
    before = torch.get_num_threads()
    if threads is None or user_chose_threads() or threads >= before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def blas_threads(n_features):
    """Context limiting BLAS to one thread for matrices narrower than :data:`SMALL_MATRIX_FEATURES`.

    A no-op for wide matrices, when the user fixed the threads, or without
    threadpoolctl.

    Parameters
    ----------
    n_features : int
        Columns of the matrices about to be multiplied or factorised.

    Returns
    -------
    context : context manager
    """
    if n_features >= SMALL_MATRIX_FEATURES or user_chose_threads():
        return nullcontext()
    return one_blas_thread()


_CONTROLLER = []


def one_blas_thread():
    """Context limiting BLAS to one thread (a no-op without threadpoolctl).

    The BLAS libraries are looked up once per process: a fresh
    ``threadpool_limits`` scans every loaded library, about 10 ms, which is
    several percent of a decomposer fit at ``d = 512``.

    Returns
    -------
    context : context manager
    """
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
            return nullcontext()
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def set_process_threads(threads):
    """Fix torch and BLAS threads for the rest of the process (the CLI's ``--threads``).

    Parameters
    ----------
    threads : int
        At least 1.

    Returns
    -------
    limits : threadpoolctl.ThreadpoolController or None
        Keep a reference while the limits should hold.
    """
    torch.set_num_threads(int(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return None
    return threadpool_limits(limits=int(threads), user_api="blas")
