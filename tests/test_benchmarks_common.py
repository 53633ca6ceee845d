"""benchmarks/_common.py: the timing helpers the benchmarks share."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("_bench_common", ROOT / "benchmarks" / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_alternate_calls_the_functions_in_turn_and_keeps_each_best(common, monkeypatch):
    # a fake clock: the durations of the calls, in call order (round by round)
    durations = iter([5.0, 1.0, 3.0, 2.0, 4.0, 9.0, 7.0, 0.5, 6.0])
    clock = {"now": 0.0}
    calls = []

    def make(k):
        def fn():
            calls.append(k)
            clock["now"] += next(durations)
        return fn

    monkeypatch.setattr(common.time, "perf_counter", lambda: clock["now"])
    best = common.alternate([make(0), make(1), make(2)], repeat=3)
    assert calls == [0, 1, 2] * 3
    assert best == [2.0, 0.5, 3.0]


def test_bench_fit_uses_the_shared_helper():
    text = (ROOT / "benchmarks" / "bench_fit.py").read_text()
    assert "def alternate" not in text
    assert "from _common import alternate" in text
