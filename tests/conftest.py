"""Shared test settings: one torch thread and one BLAS thread for every test, slow marks.

The suite runs on 2 cores with 2 pytest workers (``-n 2``): more threads only
contend (a tiny training loop took 113 s with torch's default threads and
2.3 s with one). The setting is session-wide and automatic, so no test can
forget it; a test that measures threading sets its own limits inside.
"""

import pytest
import torch

# end-to-end runs and other tests over ~10 s on idle 2 cores, by node id prefix
# (doctests and parametrised README blocks cannot carry a decorator)
SLOW = (
    "tests/test_joblib_backends.py::test_dask_backend",
    "tests/test_readme.py::test_readme_example_runs[",
    "skicr/monitoring/_monitor.py::skicr.monitoring._monitor.ICRMonitor",
)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One torch thread and one BLAS thread for the whole session (restored at the end).

    Through the library's thread home (``skicr._utils.threads``), as the CLI sets them.
    """
    from skicr._utils.threads import set_process_threads

    threads = torch.get_num_threads()
    limits = set_process_threads(1)
    yield
    if limits is not None:
        limits.restore_original_limits()
    torch.set_num_threads(threads)


@pytest.fixture
def one_torch_thread():
    """Kept for tests that still name it: the session already runs on one thread."""
    yield


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
