"""The accelerate training-loop example runs for a few CPU steps, logs, and stops on the signal."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("accelerate")
pytest.importorskip("diffusers")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "accelerate_training_loop.py"
ARGS = ["--n_images", "16", "--resolution", "8", "--train_batch_size", "8", "--icr_every", "2",
        "--icr_images", "8", "--memorization_samples", "4", "--sampler_steps", "2"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _example():
    spec = importlib.util.spec_from_file_location("accelerate_training_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_records_icr_and_memorization(tmp_path, monkeypatch):
    logged = []
    from accelerate import Accelerator

    monkeypatch.setattr(Accelerator, "log", lambda self, values, step=None: logged.append(values))
    monitor = _example().main(ARGS + ["--max_train_steps", "6", "--output_dir", str(tmp_path)])
    history = monitor.history_
    assert list(history["step"]) == [2, 4, 6]
    assert np.all(np.isfinite(history["icr"]))
    assert history["memorization_ratio"].between(0, 1).all()
    # one plain dict per step, with the monitor's numbers at the evaluated steps
    assert [values["step"] for values in logged] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([v["icr/icr"] for v in logged if "icr/icr" in v], history["icr"])


def test_example_stops_on_the_signal(tmp_path, monkeypatch):
    from skicr.monitoring import ICRMonitor

    original = ICRMonitor.__call__

    def fires_at_step_4(self, step, model):
        original(self, step, model)
        return step >= 4

    monkeypatch.setattr(ICRMonitor, "__call__", fires_at_step_4)
    monitor = _example().main(ARGS + ["--max_train_steps", "50", "--memorization_samples", "0",
                                      "--output_dir", str(tmp_path)])
    assert list(monitor.history_["step"]) == [2, 4]
