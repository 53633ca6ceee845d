"""``skicr scan`` end to end on a tiny model, and its error handling."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from skicr import cli
from skicr.models import SmallUNet, save_denoiser

TINY_GRID = ["--sigmas", "0.1,1", "--n-images", "60", "--views", "2", "--cv", "3", "--quiet"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    net = SmallUNet(channels=(4, 8), mid_channels=8, emb_dim=8, n_frequencies=2)
    return str(save_denoiser(net, tmp_path_factory.mktemp("model") / "tiny.pt"))


def read_outputs(out):
    table = pd.read_csv(out / "scan.csv")
    report = json.loads((out / "scan.json").read_text())
    return table, report


@pytest.mark.slow  # an end-to-end run of the command
def test_scan_end_to_end_on_digits(tiny_model, tmp_path, capsys):
    out = tmp_path / "scan"
    code = cli.main(["scan", "--model", tiny_model, "--out", str(out), *TINY_GRID])
    assert code == 0
    table, report = read_outputs(out)
    assert {"sigma", "icr", "probe_accuracy", "chosen"} <= set(table.columns)
    np.testing.assert_allclose(table["sigma"], [0.1, 1.0])
    assert table["icr"].between(0, 1).all() and table["probe_accuracy"].between(0, 1).all()
    assert table["chosen"].sum() == 1
    chosen = report["choice"]["best_sigma"]
    assert chosen == pytest.approx(table.loc[table["icr"].idxmin(), "sigma"])
    assert report["settings"]["n_images"] == 60 and report["settings"]["views"] == 2
    assert report["settings"]["layer"] == "mid"
    assert (out / "scan.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "<- chosen" in printed and "probe accuracy" in printed
    # a two-point grid: the optimum is at an edge, said as a plain sentence and in the JSON
    assert report["choice"]["decision"] == "grid_edge"
    assert "end of the grid" in printed and "--sigmas" in printed
    assert report["choice"]["decision_message"] in printed
    assert report["choice"]["scoring"] == "icr" and report["choice"]["clamped_sigmas"] == {}


def test_scan_other_criterion_and_rule(tiny_model, tmp_path, capsys):
    out = tmp_path / "scan"
    grid = ["--sigmas", "0.05,0.2,1", *TINY_GRID[2:]]
    assert cli.main(["scan", "--model", tiny_model, "--out", str(out), "--scoring", "rankme",
                     "--rule", "one_se_high", "--no-probe", *grid]) == 0
    table, report = read_outputs(out)
    assert report["choice"]["scoring"] == "rankme" and report["choice"]["rule"] == "one_se_high"
    assert report["choice"]["decision"] in ("interior", "grid_edge", "flat")
    assert "rule one_se_high" in capsys.readouterr().out
    # the defaults are the zoo study's winner: held-out ICR, tau 1e-2, one standard error
    assert report["settings"]["tau"] == 1e-2
    assert cli.main(["scan", "--model", tiny_model, "--out", str(tmp_path / "default"),
                     "--no-probe", *grid]) == 0
    printed = capsys.readouterr().out
    # the one-SE rule's choice need not have the lowest ICR: the summary does not claim it
    assert "rule one_se_low" in printed and "lowest" not in printed
    assert read_outputs(tmp_path / "default")[1]["choice"]["rule"] == "one_se_low"


def test_scan_tau_reaches_the_decomposer(tiny_model, tmp_path, capsys):
    icr = {}
    for tau in ("1e-2", "1e-3"):
        out = tmp_path / tau
        assert cli.main(["scan", "--model", tiny_model, "--out", str(out), "--tau", tau,
                         "--rule", "best", "--no-probe", *TINY_GRID]) == 0
        assert "(lowest held-out ICR = " in capsys.readouterr().out
        table, report = read_outputs(out)
        assert report["settings"]["tau"] == float(tau) and report["choice"]["rule"] == "best"
        icr[tau] = table["icr"].to_numpy()
    # same views and folds, another ridge: other ICR values
    assert not np.allclose(icr["1e-2"], icr["1e-3"])


@pytest.mark.slow  # an end-to-end run of the command
def test_scan_is_reproducible_and_seeded(tiny_model, tmp_path):
    tables = []
    for name, seed in [("a", "3"), ("b", "3"), ("c", "4")]:
        out = tmp_path / name
        assert cli.main(["scan", "--model", tiny_model, "--out", str(out), "--seed", seed,
                         "--no-probe", *TINY_GRID]) == 0
        tables.append(read_outputs(out)[0])
    np.testing.assert_array_equal(tables[0]["icr"], tables[1]["icr"])
    assert not np.allclose(tables[0]["icr"], tables[2]["icr"])
    assert tables[0]["probe_accuracy"].isna().all()  # --no-probe: documented NaN column


@pytest.mark.slow  # an end-to-end run of the command
def test_scan_own_images_and_options(tiny_model, tmp_path, monkeypatch):
    images = np.random.default_rng(0).random((24, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", np.arange(24) % 2)
    monkeypatch.chdir(tmp_path)  # the default --out goes in the working directory
    code = cli.main(["scan", "--model", tiny_model, "--images", "images.npy",
                     "--labels", "labels.npy", "--sigmas", "0.05:0.5:3", "--layer", "down.1",
                     "--pooling", "flatten", "--augment", "weak", "--views", "3", "--cv", "2",
                     "--quiet"])
    assert code == 0
    (out,) = tmp_path.glob("scan-*")
    table, report = read_outputs(out)
    np.testing.assert_allclose(table["sigma"], np.geomspace(0.05, 0.5, 3))
    settings = report["settings"]
    assert settings["layer"] == "down.1" and settings["pooling"] == "flatten"
    assert settings["augment"] == "weak" and settings["n_images"] == 24
    assert table["probe_accuracy"].notna().all()


@pytest.mark.slow  # an end-to-end run of the command
def test_scan_cv1_skips_the_probe(tiny_model, tmp_path, capsys):
    out = tmp_path / "scan"
    args = ["scan", "--model", tiny_model, "--out", str(out), "--sigmas", "0.1,1",
            "--n-images", "40", "--views", "2", "--cv", "1", "--quiet"]
    assert cli.main(args) == 0
    assert "probe is skipped" in capsys.readouterr().err
    assert read_outputs(out)[0]["probe_accuracy"].isna().all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sigmas", "0,1"], "positive"),
        (["--sigmas", "abc"], "comma-separated"),
        (["--sigmas", "1:0.1:4"], "0 < min < max"),
        (["--sigmas", "0.1:1:0"], ">= 1"),
        (["--views", "1"], ">= 2"),
        (["--cv", "zero"], "integer"),
        (["--n-images", "2"], ">= 4"),
        (["--unknown-flag"], "unrecognized arguments"),
        (["--pooling", "max"], "invalid choice"),
        (["--augment", "huge"], "invalid choice"),
        (["--layers", "mid,,up.0"], "comma-separated layer names"),
        (["--layers", "mid,mid"], "repeated"),
        (["--tau", "-1"], "a finite number >= 0"),
        (["--tau", "nan"], "a finite number >= 0"),
    ],
)
def test_bad_arguments_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["scan", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_no_command_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "scan" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda p, m: ["--model", str(p / "missing.pt")], "no such file"),
        (lambda p, m: ["--model", str(p / "junk.pt")], "junk.pt"),
        (lambda p, m: ["--model", str(p)], "diffusers"),
        (lambda p, m: ["--model", m, "--images", str(p / "missing")], "no such file"),
        (lambda p, m: ["--model", m, "--images", str(p / "junk.pt")], "junk.pt"),
        (lambda p, m: ["--model", m, "--layer", "nope"], "nope"),
        (lambda p, m: ["--model", m, "--layers", "mid,nope"], "nope"),
        (lambda p, m: ["--model", m, "--layers", "mid", "--layer", "mid"], "not both"),
        (lambda p, m: ["--model", m, "--device", "warp9"], "--device"),
        (lambda p, m: ["--model", m, "--labels", str(p / "junk.pt")], "--labels needs --images"),
        (lambda p, m: ["--model", m, "--out", str(p / "junk.pt")], "not a folder"),
    ],
)
def test_bad_files_exit_2_with_a_message(tiny_model, tmp_path, capsys, make_args, message):
    (tmp_path / "junk.pt").write_bytes(b"not a weights file")
    code = cli.main(["scan", *make_args(tmp_path, tiny_model), *TINY_GRID])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("skicr scan: error:") and message in err
    assert "Traceback" not in err


def test_parse_sigmas():
    np.testing.assert_allclose(cli.parse_sigmas("0.01:1:3"), [0.01, 0.1, 1.0])
    np.testing.assert_allclose(cli.parse_sigmas("0.5, 0.1"), [0.5, 0.1])
    np.testing.assert_allclose(cli.parse_sigmas("0.2"), [0.2])


@pytest.mark.slow  # an end-to-end run of the command
def test_scan_joint_layers(tiny_model, tmp_path, capsys):
    out = tmp_path / "scan"
    code = cli.main(["scan", "--model", tiny_model, "--out", str(out), "--layers",
                     "down.1, mid,up.0", "--layer-scoring", "joint", *TINY_GRID])
    assert code == 0
    table, report = read_outputs(out)
    assert list(table["layer"]) == ["down.1"] * 2 + ["mid"] * 2 + ["up.0"] * 2
    assert table["chosen"].sum() == 1 and table["probe_accuracy"].notna().all()
    best = table.loc[table["icr"].idxmin()]
    choice = report["choice"]
    assert (choice["best_layer"], choice["best_sigma"]) == (best["layer"], pytest.approx(best["sigma"]))
    peak = table.loc[table["probe_accuracy"].idxmax()]
    assert choice["probe_best_layer"] == peak["layer"]
    assert report["settings"]["layers"] == ["down.1", "mid", "up.0"]
    assert report["settings"]["layer"] is None
    assert (out / "scan.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert f"chosen layer {best['layer']!r}" in printed and "probe accuracy peaks at layer" in printed
    # the layer was chosen without labels: said plainly, in the output and in scan.json
    layer_choice = report["layer_choice"]
    assert layer_choice["label_free"] is True and layer_choice["settled"] is False
    assert layer_choice["message"] in printed and "guess" in printed
    # few-labels mode: sigma label-free within each layer, the layer from 2 labels per class
    out = tmp_path / "few"
    assert cli.main(["scan", "--model", tiny_model, "--out", str(out), "--layers", "down.1,mid",
                     "--layer-scoring", "probe", "--labels-per-class", "2", *TINY_GRID]) == 0
    _, report = read_outputs(out)
    assert report["layer_choice"]["label_free"] is False
    assert report["layer_choice"]["sigma_label_free"] is True
    assert report["choice"]["layer_scoring"] == "probe"
    assert report["choice"]["n_labels_per_class"] == 2
    assert report["layer_choice"]["message"] in capsys.readouterr().out
    # the default with --layers: the layer study's label-free procedure, said to be a guess
    from skicr.recipes import LAYER_SEARCH_DEFAULTS

    out = tmp_path / "default"
    assert cli.main(["scan", "--model", tiny_model, "--out", str(out), "--layers", "down.1,mid",
                     *TINY_GRID]) == 0
    table, report = read_outputs(out)
    assert report["choice"]["layer_scoring"] == LAYER_SEARCH_DEFAULTS["layer_scoring"]
    assert report["choice"]["rule"] == LAYER_SEARCH_DEFAULTS["rule"]
    assert report["layer_choice"]["label_free"] is True
    assert report["layer_choice"]["by"] == LAYER_SEARCH_DEFAULTS["layer_scoring"]
    assert table["chosen"].sum() == 1
