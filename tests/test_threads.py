"""The thread-defaults home: small work on one thread, explicit choices respected."""

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from skicr._utils import threads as thread_defaults


@pytest.fixture
def defaults_untouched(monkeypatch):
    """As if the user had fixed nothing: no thread variables, torch at its import-time count."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(thread_defaults, "_TORCH_THREADS_AT_IMPORT", 2)
    with threadpool_limits(limits=2, user_api="blas"):  # lift the suite's one-thread limit
        yield
    torch.set_num_threads(before)


def _blas_threads():
    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def test_network_threads_follow_the_parameter_count():
    small = torch.nn.Linear(10, 10)
    large = torch.nn.Linear(2500, 2500)  # 6.25M parameters
    assert thread_defaults.network_threads(small) == 1
    assert thread_defaults.network_threads(large) == thread_defaults.available_cores()


def test_torch_threads_lowers_then_restores(defaults_untouched):
    with thread_defaults.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with thread_defaults.torch_threads(None):
        assert torch.get_num_threads() == 2


def test_explicit_choices_win(defaults_untouched, monkeypatch):
    torch.set_num_threads(1)  # the user's call after import
    assert thread_defaults.user_chose_threads()
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert thread_defaults.user_chose_threads()
    with thread_defaults.torch_threads(1):
        assert torch.get_num_threads() == 2


def test_blas_threads_limit_small_matrices_only(defaults_untouched):
    with thread_defaults.blas_threads(64):
        assert _blas_threads() == {1}
    outside = _blas_threads()
    assert outside != {1} or thread_defaults.available_cores() == 1
    with thread_defaults.blas_threads(thread_defaults.SMALL_MATRIX_FEATURES):
        assert _blas_threads() == outside


def test_statistics_workers_rule(defaults_untouched, monkeypatch):
    cores = thread_defaults.available_cores()
    rows = 40000
    assert thread_defaults.statistics_workers(512, rows) == cores
    # small updates and wide matrices (BLAS's own threads) use one thread
    assert thread_defaults.statistics_workers(64, 8000) == 1
    assert thread_defaults.statistics_workers(thread_defaults.SMALL_MATRIX_FEATURES, rows) == 1
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert thread_defaults.statistics_workers(512, rows) == 3  # the user's smallest count
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_defaults.statistics_workers(512, rows) == 1


def test_statistics_workers_outside_the_main_thread_is_one(defaults_untouched):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(thread_defaults.statistics_workers, 512, 40000).result() == 1


def test_statistics_workers_follow_a_threadpoolctl_limit(defaults_untouched):
    if thread_defaults.available_cores() == 1:
        pytest.skip("one core")
    with threadpool_limits(limits=1, user_api="blas"):
        assert thread_defaults.statistics_workers(512, 40000) == 1
        with thread_defaults.one_blas_thread():  # skicr's own limit is not the user's
            assert thread_defaults.statistics_workers(512, 40000) == 1
    with thread_defaults.one_blas_thread():
        assert thread_defaults.statistics_workers(512, 40000) == thread_defaults.available_cores()
