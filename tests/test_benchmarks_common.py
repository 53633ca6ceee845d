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


def test_results_table_is_the_markdown_the_benchmarks_wrote(common, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    rows = [("fit", "N=10", "1.0 s", "2.0 s", "**2.0x**", ">= 2x")]
    text = common.write_results_table(["Machine: m", "Command: `c`"], rows, "t.md", quick=False)
    # the format bench_core.py and bench_fit.py wrote by hand before (results files unchanged)
    assert text == ("Machine: m\nCommand: `c`\n\n| benchmark | size | skicr | reference | ratio | goal |\n"
                    "|---|---|---|---|---|---|\n| fit | N=10 | 1.0 s | 2.0 s | **2.0x** | >= 2x |")
    assert (tmp_path / "t.md").read_text() == text + "\n"
    assert capsys.readouterr().out == text + "\n"
    common.write_results_table(["x"], rows, "quick.md", quick=True)
    assert not (tmp_path / "quick.md").exists()  # a quick run writes nothing


def test_memory_benchmark_arguments_run_the_worker_or_return_the_options(common, monkeypatch):
    calls = []
    monkeypatch.setattr("sys.argv", ["bench", "--memory-worker", "out.json", "64"])
    assert common.memory_benchmark_arguments("d", lambda path, n: calls.append((path, n))) is None
    assert calls == [("out.json", 64)]
    monkeypatch.setattr("sys.argv", ["bench", "--quick"])
    assert common.memory_benchmark_arguments("d", None).quick


@pytest.mark.parametrize("script", ["bench_core.py", "bench_fit.py", "bench_streaming.py",
                                    "bench_streaming_scan.py", "layer_study.py", "noise_level_study.py"])
def test_benchmarks_use_the_shared_helpers(script):
    text = (ROOT / "benchmarks" / script).read_text()
    assert "| benchmark | size |" not in text and 'add_argument("--memory-worker"' not in text
    assert "load_checkpoint(" not in text or script == "noise_level_study.py"


def test_study_models_names_the_models_with_weights(monkeypatch, capsys, tmp_path):
    import sys

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.delitem(sys.modules, "noise_level_study", raising=False)
    import noise_level_study as study

    present = tmp_path / "w.pt"
    present.write_bytes(b"")
    models = {"a": {"split": "dev", "file": present}, "b": {"split": "heldout", "file": present},
              "c": {"split": "dev", "file": tmp_path / "missing.pt"}}
    monkeypatch.setattr(study, "MODELS", models)
    assert list(study.study_models(split="dev")) == ["a"]
    assert "skip c: no weights" in capsys.readouterr().out
    assert list(study.study_models(split="all")) == ["a", "b"]
    assert list(study.study_models("b,a")) == ["b", "a"]
    assert list(study.study_models()) == []
