"""Ctrl-C during long numeric phases: answered at once, and never with half-updated state.

Two tools, used by the numerical core, the streaming fit and the command line:

- :func:`interruptible` runs one long call (a LAPACK factorisation of a wide
  layer, which holds the interpreter for minutes without checking for
  signals) in a worker thread while the main thread waits in short steps, so
  ``KeyboardInterrupt`` reaches the caller within a tenth of a second. The
  call itself cannot be stopped: it finishes in the background and its result
  is dropped. Only pure computations go through it (nothing they touch is
  shared), so dropping the result leaves no state behind.
- :func:`deferred_interrupts` holds Ctrl-C back over a short commit (the few
  in-place additions that fold a chunk into an accumulator): the interrupt is
  raised when the block ends, so the accumulator holds the chunk entirely or
  not at all.
"""

import contextlib
import signal
import threading
import time

__all__ = ["LONG_CALL_SIZE", "deferred_interrupts", "interruptible", "interruptible_if", "worker_running"]

#: matrices of this order and larger are factorised through :func:`interruptible`
#: (an ``eigh`` of order 1024 takes about a second on two cores; below that the
#: wait is short anyway and a thread would only add overhead)
LONG_CALL_SIZE = 1024
#: seconds between the main thread's checks for an interrupt while a worker runs
POLL_SECONDS = 0.1
WORKER_NAME = "skicr-work"
_RUNNING = set()  # the done-events of workers still computing


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


def interruptible(work, *, on_wait=None):
    """Run ``work()`` in a worker thread, so that Ctrl-C is answered at once.

    Parameters
    ----------
    work : callable
        Takes no arguments; a pure computation (its result is dropped when
        the caller is interrupted).
    on_wait : callable or None, default=None
        Called as ``on_wait(elapsed_seconds)`` at every check while ``work``
        runs (a heartbeat, for instance).

    Returns
    -------
    result : object
        What ``work`` returned; its exception is raised here.

    Notes
    -----
    Outside the main thread (where no KeyboardInterrupt is delivered) ``work``
    is called directly.
    """
    if not _in_main_thread():
        return work()
    outcome = {}
    done = threading.Event()

    def target():
        try:
            outcome["value"] = work()
        except BaseException as exc:  # re-raised in the main thread
            outcome["error"] = exc
        finally:
            done.set()
            _RUNNING.discard(done)

    worker = threading.Thread(target=target, name=WORKER_NAME, daemon=True)
    started = time.monotonic()
    _RUNNING.add(done)
    worker.start()
    # an Event, not worker.is_alive(): a join interrupted by Ctrl-C marks the thread
    # stopped (Python < 3.12) although it still runs
    while not done.wait(POLL_SECONDS):
        if on_wait is not None:
            on_wait(time.monotonic() - started)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def interruptible_if(size, work):
    """``work()`` through :func:`interruptible` when ``size >= LONG_CALL_SIZE``, else directly.

    Parameters
    ----------
    size : int
        Order of the matrix the call factorises.
    work : callable
        Takes no arguments.

    Returns
    -------
    result : object
    """
    return interruptible(work) if size >= LONG_CALL_SIZE else work()


def worker_running():
    """Whether an :func:`interruptible` worker is still computing (after an interrupt).

    Returns
    -------
    running : bool
    """
    return any(not done.is_set() for done in list(_RUNNING))


@contextlib.contextmanager
def deferred_interrupts():
    """Hold Ctrl-C (SIGINT) back until the block ends, then raise KeyboardInterrupt.

    For short commits only (a few in-place additions): an interrupt arriving
    inside the block is raised as it leaves it, so what the block updates is
    either fully updated or, if the block itself fails, as the exception left
    it. Outside the main thread, or where another handler than Python's
    default owns SIGINT, the block runs unchanged.

    Yields
    ------
    None
    """
    if not _in_main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
