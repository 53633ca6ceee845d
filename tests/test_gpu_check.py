"""The GPU check's CPU variant runs in CI so that the script cannot rot."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_cpu_variant_passes_and_writes_results(tmp_path, one_torch_thread):
    gpu_check = _load("gpu_check")
    out = tmp_path / "gpu_check_cpu.md"
    assert gpu_check.main(["--cpu", "--out", str(out)]) == 0
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["variant"] == "cpu" and results["ok"]
    # both sides of the throughput comparison ran and were timed
    rates = results["throughput"]["images_per_s"]
    assert set(rates) == {"naive loop", "FeatureExtractor"} and min(rates.values()) > 0
    # the all-reduce went through a real (gloo) process group and changed nothing
    assert results["all_reduce"]["backend"] == "gloo"
    assert results["all_reduce"]["max_relative_difference"] < 1e-10
    # bfloat16 autocast really ran: its features differ from float32, within the tolerance
    bf16 = results["equality"]["bfloat16"]
    assert 0 < bf16["max_relative_difference"] <= bf16["tolerance"]
    assert results["equality"]["float32"]["max_relative_difference"] == 0
    text = out.read_text()
    assert "| naive loop |" in text and "| FeatureExtractor |" in text


def test_collect_picks_up_the_gpu_check_results():
    collect = _load("collect")
    files = [filename for filename, _, _ in collect.SECTIONS]
    assert "gpu_check.md" in files and "gpu_check_cpu.md" in files
