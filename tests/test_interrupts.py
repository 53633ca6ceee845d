"""Ctrl-C from the Python API (issue 14): answered at once in long numeric phases, never with
half-updated statistics, a half-written checkpoint, report or figure.

A real Ctrl-C is simulated with ``_thread.interrupt_main()``, which delivers SIGINT's effect to
the main thread exactly as the terminal would; a KeyboardInterrupt raised from a patched step
stands for one that lands inside that step.
"""

import _thread
import signal
import threading
import time

import numpy as np
import pytest
import torch

from skicr import InvariantResidualDecomposer
from skicr._utils import interrupts, serialization
from skicr._utils.interrupts import deferred_interrupts, interruptible, worker_running
from skicr._utils.plotting import save_figure
from skicr.extraction import FeatureExtractor, fit_from_loader
from skicr.extraction._testing import TinyEDMNet
from skicr.metrics import GroupedViewStatistics, accumulate, decompose
from skicr.metrics import _icr, _statistics

from _synthetic import assert_same_fit, assert_same_statistics


@pytest.fixture(autouse=True)
def ctrl_c_raises_keyboard_interrupt():
    """SIGINT handled as in an interactive terminal, whatever started the suite.

    A shell without job control starts background commands with SIGINT ignored
    (``cmd &`` in a script), and ``interrupt_main`` then does nothing.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c_after(seconds):
    """Press Ctrl-C (SIGINT in the main thread) ``seconds`` from now."""
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    return timer


def wait_for_workers(limit=10.0):
    end = time.monotonic() + limit
    while worker_running() and time.monotonic() < end:
        time.sleep(0.02)
    assert not worker_running()


def views(seed=0, n=30, v=3, d=6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, d)) + 0.5 * rng.normal(size=(n, v, d))


# ------------------------------------------------------------------ the two tools
def test_a_long_call_is_answered_within_a_fraction_of_a_second():
    start = time.monotonic()
    ctrl_c_after(0.1)
    with pytest.raises(KeyboardInterrupt):
        interruptible(lambda: time.sleep(1.5))  # stands for a minutes-long LAPACK call
    assert time.monotonic() - start < 0.8
    assert worker_running()  # it cannot be stopped inside the call: it ends in the background
    wait_for_workers()


def test_interruptible_returns_the_value_and_raises_the_error():
    assert interruptible(lambda: 7) == 7

    def fail():
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        interruptible(fail)
    seen = []
    interruptible(lambda: time.sleep(0.35), on_wait=seen.append)
    assert len(seen) >= 2 and seen == sorted(seen)


def test_deferred_interrupts_finish_the_block_then_raise():
    finished = []
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            _thread.interrupt_main()
            time.sleep(0.05)  # Python checks for signals here: held back
            finished.append(True)
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is handler
    with deferred_interrupts():  # no interrupt: nothing raised
        finished.append(True)


# ----------------------------------------------------------- accumulators and fits
def test_an_interrupted_update_leaves_the_statistics_as_they_were(monkeypatch):
    first, second = views(0), views(1)
    stats = accumulate(first)
    before = stats.copy()

    def interrupted(rows):
        raise KeyboardInterrupt  # Ctrl-C inside the chunk's sums

    monkeypatch.setattr(_statistics, "_image_gram_fourth", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stats.update(second)
    monkeypatch.undo()
    assert stats.n_images == before.n_images
    for name in ("mean_sum", "mean_scatter", "residual_scatter", "shift"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(before, name))
    assert stats.residual_fourth == before.residual_fourth
    # and the next update gives what an uninterrupted run gives
    assert_same_statistics(stats.update(second), accumulate(np.concatenate([first, second])))


def test_ctrl_c_during_the_commit_is_raised_after_the_whole_chunk_is_in(monkeypatch):
    # a chunk beyond the one-pass range (2**200): the accumulator is rescaled in the commit
    first, second = views(0), 1e70 * views(1)
    stats = accumulate(first)
    rescale = GroupedViewStatistics._rescale_to

    def pressed_during_commit(self, new_scale):
        _thread.interrupt_main()
        time.sleep(0.02)
        return rescale(self, new_scale)

    monkeypatch.setattr(GroupedViewStatistics, "_rescale_to", pressed_during_commit)
    with pytest.raises(KeyboardInterrupt):
        stats.update(second)
    monkeypatch.undo()
    assert_same_statistics(stats, accumulate(np.concatenate([first, second])), rtol=1e-10)


def test_an_interrupted_partial_fit_can_continue(monkeypatch):
    first, second = views(0), views(1)
    decomposer = InvariantResidualDecomposer().partial_fit(first)
    icr_before = decomposer.icr_
    monkeypatch.setattr(_statistics, "_image_gram_fourth", lambda rows: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        decomposer.partial_fit(second)
    monkeypatch.undo()
    assert decomposer.icr_ == icr_before and decomposer.n_images_seen_ == 30
    decomposer.partial_fit(second)
    assert_same_fit(decomposer, InvariantResidualDecomposer().fit(np.concatenate([first, second])))


def test_the_spectrum_of_a_wide_layer_is_answered_at_once(monkeypatch):
    # d at the threshold: the LAPACK call goes through a worker (stood for by a slow one)
    d = interrupts.LONG_CALL_SIZE
    rng = np.random.default_rng(0)
    stats = accumulate(rng.normal(size=(4, 2, d)))
    spectrum = _icr.generalized_spectrum
    threads = []

    pressed = []

    def slow(*args):
        threads.append(threading.current_thread().name)  # not the main thread: a worker
        pressed.append(time.monotonic())
        ctrl_c_after(0.05)
        time.sleep(1.5)
        return spectrum(*args)

    monkeypatch.setattr(_icr, "generalized_spectrum", slow)
    with pytest.raises(KeyboardInterrupt):
        decompose(stats, tau=1.0)
    assert time.monotonic() - pressed[0] < 1.0
    assert threads == [interrupts.WORKER_NAME]
    wait_for_workers()
    # below the threshold the call stays in the caller's thread (no thread overhead)
    threads.clear()
    monkeypatch.setattr(_icr, "generalized_spectrum", lambda *args: (threads.append(
        threading.current_thread().name), spectrum(*args))[1])
    decompose(accumulate(rng.normal(size=(10, 2, 4))))
    assert threads == [threading.main_thread().name]


# ------------------------------------------------------------- what is written
@pytest.fixture(scope="module")
def loader():
    images = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    return [images[start:start + 3] for start in range(0, 12, 3)]


def extractor():
    return FeatureExtractor(TinyEDMNet(seed=0), layer="mid", sigma=0.3, n_views=3, random_state=0)


def ctrl_c_at_batch(loader, number):
    for k, batch in enumerate(loader):
        if k == number:
            raise KeyboardInterrupt
        yield batch


def test_ctrl_c_in_a_streamed_fit_keeps_a_whole_checkpoint_that_resumes(loader, tmp_path):
    path = tmp_path / "fit.pt"
    full = fit_from_loader(extractor(), loader)
    with pytest.raises(KeyboardInterrupt):
        fit_from_loader(extractor(), ctrl_c_at_batch(loader, 2), checkpoint=path, checkpoint_every=1)
    saved = torch.load(path, weights_only=True)
    assert saved["n_batches"] == 2 and not saved["complete"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.pt"]
    assert_same_fit(fit_from_loader(extractor(), loader, checkpoint=path), full)


def test_ctrl_c_while_a_checkpoint_is_written_keeps_the_previous_one(loader, tmp_path, monkeypatch):
    path = tmp_path / "fit.pt"
    with pytest.raises(KeyboardInterrupt):
        fit_from_loader(extractor(), ctrl_c_at_batch(loader, 1), checkpoint=path)
    previous = path.read_bytes()
    save = torch.save

    def interrupted_save(state, target):
        save(state, target)
        with open(target, "r+b") as handle:  # half a file on disk, then Ctrl-C
            handle.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        fit_from_loader(extractor(), loader, checkpoint=path)
    monkeypatch.undo()
    assert path.read_bytes() == previous  # the whole previous checkpoint, not half a new one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.pt"]  # no stray temporary file


def test_ctrl_c_while_a_figure_is_saved_leaves_no_image(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])

    def interrupted(target, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise KeyboardInterrupt

    figure.savefig = interrupted
    with pytest.raises(KeyboardInterrupt):
        save_figure(figure, tmp_path / "scan.png")
    assert list(tmp_path.iterdir()) == []
    figure, ax = plt.subplots()
    save_figure(figure, tmp_path / "scan.png")
    assert (tmp_path / "scan.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.png"]
