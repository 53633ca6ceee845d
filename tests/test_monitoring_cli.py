"""``skicr track`` end to end on a tiny network, and its errors."""

import json

import numpy as np
import pandas as pd
import pytest

from skicr.monitoring import ICRMonitor
from skicr.cli import main
from skicr.cli._track import _select_images



def tiny(steps=6, samples=8):
    """Options of a run of a few seconds: a tiny network, few images, few samples."""
    return ["--steps", str(steps), "--eval-every", "2", "--channels", "4", "8",
            "--mid-channels", "8", "--samples", str(samples), "--sampler-steps", "3",
            "--icr-images", "16", "--views", "2", "--warmup-steps", "0", "--quiet"]


TINY = tiny()


@pytest.mark.slow  # an end-to-end run of the command
def test_track_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["track", "--subset", "32", "--out", str(out), "--save-checkpoints", *TINY])
    assert code == 0
    table = pd.read_csv(out / "track.csv")
    assert {"step", "icr", "memorization_ratio", "trace_s", "trace_xi"} <= set(table.columns)
    assert table["step"].tolist() == [0, 2, 4, 6]  # the untrained network, then every 2 steps
    assert table["icr"].between(0, 1).all() and table["memorization_ratio"].between(0, 1).all()
    assert (table["trace_s"] > 0).all() and (table["trace_xi"] > 0).all()
    assert table["n_images"].eq(16).all() and table["n_views"].eq(2).all()
    report = json.loads((out / "track.json").read_text())
    assert report["settings"]["n_training_images"] == 32 and report["settings"]["layer"] == "mid"
    assert report["icr_minimum"] is not None
    # held-out digits (as many as the measured ones) and the verdict of the study's rule
    assert table["heldout_icr"].between(0, 1).all()
    assert report["settings"]["heldout_images"] == 16
    verdict = report["verdict"]
    assert verdict["rule"] == "heldout_gap" and isinstance(verdict["fired"], bool)
    assert verdict["sentence"] in capsys.readouterr().out
    assert (out / "track.png").stat().st_size > 1000

    # the saved EMA weights give back the ICR measured during training
    checkpoints = sorted((out / "checkpoints").glob("*.pt"))
    assert len(checkpoints) == 4
    _, measured = _select_images(32, 16, 0)
    replay = ICRMonitor(measured, n_views=2, random_state=0).from_checkpoints(checkpoints[1:])
    np.testing.assert_allclose(replay.history_["icr"], table["icr"][1:], rtol=1e-10)
    assert replay.history_["step"].tolist() == [2, 4, 6]


@pytest.mark.slow  # an end-to-end run of the command
def test_track_default_out_folder_and_no_memorization(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["track", "--subset", "20", *tiny(steps=4, samples=0)]) == 0
    (out,) = tmp_path.glob("track-*")
    table = pd.read_csv(out / "track.csv")
    assert "memorization_ratio" not in table and table["step"].tolist() == [0, 2, 4]


@pytest.mark.slow  # an end-to-end run of the command
def test_track_early_stop_ends_training(tmp_path, monkeypatch, capsys):
    icr = iter(0.3 + 0.002 * (np.arange(50) - 8) ** 2)  # scripted: minimum at evaluation 8
    monkeypatch.setattr(ICRMonitor, "evaluate", lambda self, model: {
        "icr": next(icr), "trace_s": 1.0, "trace_xi": 1.0})
    out = tmp_path / "run"
    assert main(["track", "--subset", "20", "--out", str(out), "--early-stop",
                 "--rule", "turning_point", *tiny(steps=60, samples=0)]) == 0
    report = json.loads((out / "track.json").read_text())
    assert report["stopped_early"] and report["icr_minimum"]["found"]
    assert report["icr_minimum"]["step"] == 16  # evaluation 8, every 2 steps
    assert 16 < report["settings"]["steps_done"] < 60
    # the verdict: when it fired, the checkpoint to keep (the minimum), how sure
    verdict = report["verdict"]
    assert verdict["fired"] and verdict["checkpoint"] == 16
    assert verdict["step"] == report["settings"]["steps_done"]
    assert 0.95 < verdict["confidence"] <= 1
    printed = capsys.readouterr().out
    assert "training stopped at step" in printed
    assert "Keep the checkpoint of step 16" in printed


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--subset", "5000"], "exceeds the 1797 digits"),
        (["--subset", "20", "--eval-every", "50"], "exceeds --steps"),
        (["--subset", "20", "--layer", "nope"], "nope"),
        (["--subset", "20", "--device", "cuda:7"], "device"),
        (["--heldout-images", "8"], "needs --subset"),
        (["--rule", "heldout_gap"], "held-out digits"),
    ],
)
def test_track_bad_arguments_exit_2(extra, message, tmp_path, capsys):
    code = main(["track", "--out", str(tmp_path / "x"), *TINY, *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "track.csv").exists()


@pytest.mark.parametrize(
    "extra",
    [["--subset", "1"], ["--sigma", "-1"], ["--steps", "0"], ["--pooling", "max"],
     ["--ema-decay", "1.5"], ["--steps", "many"]],
)
def test_track_malformed_options_exit_2(extra, capsys):
    with pytest.raises(SystemExit) as info:
        main(["track", *extra])
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_track_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["track", "--subset", "20", "--out", str(target), *TINY]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_track_is_wired_into_skicr_cli():
    from skicr import cli

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert "track" in commands
    args = parser.parse_args(["track", "--subset", "64"])
    assert args.subset == 64 and args.func.__name__ == "run_track"


def test_track_rules_are_the_detectors():
    from skicr.cli._track import _RULES
    from skicr.monitoring import DETECTORS

    assert sorted(_RULES) == sorted(DETECTORS)
