"""``skicr scan --stream``: dataset inputs, the streamed scan equal to the in-memory one, torchrun."""

import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skicr import cli
from skicr.models import SmallUNet, save_denoiser

# 60 images, 2 views, 3 folds: 40 training residual rows, above the tiny model's 8 features
GRID = ["--sigmas", "0.1,1", "--n-images", "60", "--views", "2", "--cv", "3", "--quiet",
        "--batch-size", "16"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    net = SmallUNet(channels=(4, 8), mid_channels=8, emb_dim=8, n_frequencies=2)
    return str(save_denoiser(net, tmp_path_factory.mktemp("model") / "tiny.pt"))


def _outputs(out):
    return pd.read_csv(out / "scan.csv"), json.loads((out / "scan.json").read_text())


def test_streamed_scan_equals_in_memory_scan(tiny_model, tmp_path):
    for name, extra in (("memory", []), ("stream", ["--stream"])):
        assert cli.main(["scan", "--model", tiny_model, "--out", str(tmp_path / name), *GRID,
                         *extra]) == 0
    (memory, memory_report), (stream, stream_report) = (_outputs(tmp_path / n) for n in ("memory", "stream"))
    for column in ("icr", "icr_std", "probe_accuracy"):
        np.testing.assert_allclose(stream[column], memory[column], rtol=1e-10)
    assert stream_report["settings"]["stream"] and not memory_report["settings"]["stream"]
    assert stream_report["choice"]["best_sigma"] == memory_report["choice"]["best_sigma"]


def test_stream_scan_of_a_class_tree_probes_with_folder_labels(tiny_model, tmp_path, capsys):
    from skicr.datasets import load_digits_images

    images, y = load_digits_images()
    for i in range(30):
        folder = tmp_path / "tree" / f"digit{y[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((images[i, 0] * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "scan"
    args = ["scan", "--model", tiny_model, "--images", str(tmp_path / "tree"), "--out", str(out),
            "--sigmas", "0.1,1", "--views", "2", "--cv", "3", "--quiet", "--stream",
            "--checkpoint", str(tmp_path / "ckpt")]
    assert cli.main(args) == 0
    table, report = _outputs(out)
    assert table["probe_accuracy"].between(0, 1).all()  # labels from the folder names
    assert report["settings"]["n_images"] == 30 and report["settings"]["stream"]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["sigma-000.pt", "sigma-001.pt"]
    # resumed from the finished checkpoints: the same table
    shutil.rmtree(out)
    assert cli.main(args) == 0
    again, _ = _outputs(out)
    np.testing.assert_allclose(again["icr"], table["icr"], rtol=0)


def test_stream_option_errors(tiny_model, tmp_path, capsys):
    base = ["scan", "--model", tiny_model, "--out", str(tmp_path / "x"), *GRID]
    assert cli.main([*base, "--checkpoint", str(tmp_path / "c")]) == 2
    assert "need --stream" in capsys.readouterr().err
    assert cli.main([*base, "--stream", "--layers", "down.0,mid"]) == 2
    assert "--layers" in capsys.readouterr().err
    assert cli.main([*base, "--stream", "--scoring", "icr_top"]) == 2
    assert "in-memory scan only" in capsys.readouterr().err


@pytest.mark.slow  # two torchrun processes, each importing torch
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_scan_under_torchrun_rank0_writes_the_report(tiny_model, tmp_path):
    out = tmp_path / "scan"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    command = [shutil.which("torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "skicr.cli",
               "scan", "--model", tiny_model, "--out", str(out), *GRID, "--batch-size", "1"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    table, report = _outputs(out)
    assert report["settings"]["processes"] == 2 and report["settings"]["stream"]
    assert cli.main(["scan", "--model", tiny_model, "--out", str(tmp_path / "one"), *GRID,
                     "--batch-size", "1", "--stream"]) == 0
    single, _ = _outputs(tmp_path / "one")
    np.testing.assert_allclose(table["icr"], single["icr"], rtol=1e-10)
    np.testing.assert_allclose(table["probe_accuracy"], single["probe_accuracy"], rtol=1e-10)


def test_stream_scan_converts_channels_per_image(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)  # RGB for a grey model
    np.savez(tmp_path / "rgb.npz", images=images, labels=np.arange(24) % 2)
    out = tmp_path / "scan"
    base = ["scan", "--model", tiny_model, "--images", str(tmp_path / "rgb.npz"), "--out", str(out),
            "--sigmas", "0.1,1", "--views", "2", "--cv", "2", "--quiet", "--stream"]
    assert cli.main(base) == 2  # 3 channels for a 1-channel model: the error names the option
    assert cli.main([*base, "--image-channels", "1"]) == 0
    table, report = _outputs(out)
    assert report["settings"]["image_channels"] == 1 and table["probe_accuracy"].between(0, 1).all()
