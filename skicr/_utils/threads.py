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
  with **one BLAS thread**; wider ones keep the BLAS default (all cores);
* the statistics update of such narrow views (the decomposer fit's main cost)
  runs its batches on all cores, each thread with one BLAS thread
  (:func:`statistics_workers`), once it has :data:`SMALL_UPDATE_FLOPS`
  multiply-adds: threads that wait for each other there block instead of
  spinning, so the update is about as fast as the BLAS threads on free cores
  and no slower than one thread on shared ones, and its batches (fixed by the
  data's shape) give the same bits for any number of threads.

An explicit choice always wins: ``--threads`` on the command line, the
``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS``
environment variables, or a ``torch.set_num_threads`` call made before skicr
runs (the library only lowers the count while torch is still at the value it
had when skicr was imported).
"""

import os
import threading
from contextlib import contextmanager, nullcontext

import torch

__all__ = [
    "SMALL_MATRIX_FEATURES",
    "SMALL_NETWORK_PARAMETERS",
    "SMALL_UPDATE_FLOPS",
    "available_cores",
    "blas_threads",
    "network_threads",
    "one_blas_thread",
    "set_process_threads",
    "statistics_workers",
    "torch_threads",
    "user_chose_threads",
]

# below these sizes one thread is at least as fast on idle cores and far
# faster on shared ones (benchmarks/bench_threads.py)
SMALL_NETWORK_PARAMETERS = 5_000_000
SMALL_MATRIX_FEATURES = 1024
# below this many multiply-adds (rows x columns^2) a statistics update runs on
# one thread: at d = 64 and 8000 rows (33M, 6 ms) two threads were 1.26x
# slower beside two busy processes; at d = 512 and 40000 rows (10G) 1.3x faster
SMALL_UPDATE_FLOPS = 2**28

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


def _chosen_thread_count():
    """The thread count the user fixed (the smallest one set), or None.

    A BLAS limit set with threadpoolctl (``threadpool_limits(1)``, or the
    CLI's ``--threads``) counts too.
    """
    if not user_chose_threads():
        return _user_blas_threads()
    counts = [int(value) for value in (os.environ.get(name, "").strip() for name in _THREAD_VARIABLES)
              if value.isdigit() and int(value) > 0]
    return min(counts) if counts else torch.get_num_threads()


def statistics_workers(n_features, n_rows):
    """Threads for the blocked statistics update of ``n_rows`` views of ``n_features`` columns.

    Narrow matrices (below :data:`SMALL_MATRIX_FEATURES` columns) split the
    update into batches run on this many threads, each with one BLAS thread:
    all cores, or the count the user fixed (:func:`user_chose_threads`, or a
    BLAS limit set with threadpoolctl outside skicr's own limits). Wide
    ones return 1 and leave the cores to the BLAS library's own threads, and
    so do updates of fewer than :data:`SMALL_UPDATE_FLOPS` (the threads'
    start and hand-offs would cost more than they save). A call from a thread
    other than the main one (a joblib threading worker, say) returns 1, so
    that parallel callers do not multiply threads.

    Parameters
    ----------
    n_features : int
    n_rows : int
        Views in the update (images times views per image).

    Returns
    -------
    workers : int
    """
    if (n_features >= SMALL_MATRIX_FEATURES or n_rows * n_features**2 < SMALL_UPDATE_FLOPS
            or threading.current_thread() is not threading.main_thread()):
        return 1
    chosen = _chosen_thread_count()
    return max(1, chosen if chosen is not None else available_cores())


_CONTROLLER = []
# BLAS threads when each of skicr's own one-thread limits began (a stack: they nest)
_BLAS_THREADS_OUTSIDE = []


def _blas_controller():
    """The process's threadpoolctl controller, looked up once (None without threadpoolctl).

    A fresh ``threadpool_limits`` scans every loaded library, about 10 ms,
    which is several percent of a decomposer fit at ``d = 512``.
    """
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
            return None
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def _blas_thread_count(controller):
    counts = [lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas"]
    return min(counts) if counts else None


def _user_blas_threads():
    """BLAS threads outside skicr's own limits, if fewer than the cores (a user's limit), else None."""
    if _BLAS_THREADS_OUTSIDE:
        count = _BLAS_THREADS_OUTSIDE[0]
    else:
        controller = _blas_controller()
        count = None if controller is None else _blas_thread_count(controller)
    return count if count is not None and count < available_cores() else None


@contextmanager
def one_blas_thread():
    """Context limiting BLAS to one thread (a no-op without threadpoolctl)."""
    controller = _blas_controller()
    if controller is None:  # pragma: no cover
        yield
        return
    _BLAS_THREADS_OUTSIDE.append(_blas_thread_count(controller))
    try:
        with controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _BLAS_THREADS_OUTSIDE.pop()


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
