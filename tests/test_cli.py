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
    assert choice["layer_scoring"] == "joint" and report["layer_choice"]["by"] == "icr"
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


@pytest.mark.slow  # an end-to-end run of the command, then the same search in the library
def test_scan_layers_default_is_the_library_default(tiny_model, tmp_path, capsys):
    """``skicr scan --layers`` and ``NoiseLevelSelector(layers=...)`` with their defaults run
    the same procedure (the layer study's, LAYER_SEARCH_DEFAULTS) and choose the same cell,
    with the same verdict and the same layer-choice report."""
    import warnings

    from skicr import FeatureExtractor, NoiseLevelSelector
    from skicr.cli._scan import load_scan_data
    from skicr.model_selection import LAYER_SEARCH_DEFAULTS, LayerChoiceWarning
    from skicr.models import load_checkpoint
    from skicr.recipes import make_probe

    out = tmp_path / "default"
    layers = ["down.1", "mid", "up.0"]
    assert cli.main(["scan", "--model", tiny_model, "--out", str(out), "--layers",
                     ",".join(layers), "--sigmas", "0.05,0.2,1", *TINY_GRID[2:]]) == 0
    table, report = read_outputs(out)
    printed = capsys.readouterr().out
    # the library, on the command's images, with its own defaults
    images, y, _ = load_scan_data(None, None, 60, 0)
    extractor = FeatureExtractor(load_checkpoint(tiny_model), layer=layers[0], n_views=2,
                                 pooling="mean", batch_size=256, random_state=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")  # the verdict's warning too: said by both, not tested here
        selector = NoiseLevelSelector(extractor, [0.05, 0.2, 1.0], layers=layers,
                                      probe=make_probe(), cv=3, random_state=0).fit(images, y)
    choice = report["choice"]
    assert selector.layer_scoring_ == choice["layer_scoring"] == "icr_top"
    assert choice["layer_scoring"] == LAYER_SEARCH_DEFAULTS["layer_scoring"]
    assert choice["rule"] == selector.selection_rule == LAYER_SEARCH_DEFAULTS["selection_rule"]
    assert choice["scoring"] == selector.scoring == LAYER_SEARCH_DEFAULTS["scoring"]
    assert (choice["best_layer"], choice["best_index"]) == (selector.best_layer_,
                                                           selector.best_index_)
    assert choice["best_sigma"] == pytest.approx(selector.best_sigma_)
    np.testing.assert_allclose(table["icr"], selector.cv_results_["mean_icr"], rtol=1e-12)
    assert choice["decision"] == selector.decision_
    # one report: scan.json's layer_choice is the selector's layer_choice_, and the printed
    # sentence carries the warning's message
    assert report["layer_choice"] == json.loads(json.dumps(selector.layer_choice_))
    assert report["layer_choice"]["study_procedure"] is True
    messages = [str(w.message) for w in record if w.category is LayerChoiceWarning]
    assert len(messages) == 1
    message = messages[0]
    assert message == report["layer_choice"]["message"] and message in printed
