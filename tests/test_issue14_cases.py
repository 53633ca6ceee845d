"""Issue 14 cases found still open when the issue was re-checked case by case."""

import numpy as np
import pytest
import torch

from skicr import InvariantResidualDecomposer, cli
from skicr.models import SmallUNet, load_denoiser, save_denoiser


def error_lines(err):
    return [line for line in err.strip().splitlines() if line.strip() and not line.startswith(("usage:", " "))]


@pytest.fixture
def hand_made_state_dict(tmp_path):
    """A weights file edited by hand (no content hash) whose state dict has a wrong shape."""
    torch.manual_seed(0)
    path = save_denoiser(SmallUNet(channels=(4, 8), mid_channels=8, emb_dim=8, n_frequencies=2), tmp_path / "w.pt")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload = {key: value for key, value in payload.items() if "hash" not in key}
    key = next(k for k, v in payload["state_dict"].items() if v.ndim == 4)
    payload["state_dict"][key] = torch.zeros(1, 1, 1, 1)
    torch.save(payload, tmp_path / "edited.pt")
    return tmp_path / "edited.pt", key


def test_a_bad_hand_made_model_is_one_line_without_the_hash_note(hand_made_state_dict, capsys, tmp_path):
    path, key = hand_made_state_dict
    code = cli.main(["scan", "--model", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in err, err
    assert "UnverifiedFileWarning" not in err and "_pretrained.py" not in err


def test_the_hash_note_still_comes_for_a_file_that_loads(tmp_path):
    torch.manual_seed(0)
    path = save_denoiser(SmallUNet(channels=(4, 8), mid_channels=8, emb_dim=8, n_frequencies=2), tmp_path / "w.pt")
    payload = {k: v for k, v in torch.load(path, weights_only=True).items() if "hash" not in k}
    torch.save(payload, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="no content hash"):
        load_denoiser(tmp_path / "old.pt")


def test_cli_warnings_are_one_line_each(capsys, monkeypatch):
    import warnings

    from skicr.cli import _scan

    def warn_then_fail(args):
        warnings.warn("a note for the user", UserWarning)
        return 0

    monkeypatch.setattr(_scan, "run_scan", warn_then_fail)
    parser_func = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser_func(), warn_then_fail))
    assert cli.main(["scan"]) == 0
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["skicr scan: warning: a note for the user"]


def _with_func(parser, func):
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser


@pytest.mark.parametrize("n_images", [0, 1])
def test_too_few_images_quote_the_users_3d_shape(n_images):
    with pytest.raises(ValueError, match=rf"views of shape \({n_images}, 3, 4\).*minimum of 2"):
        InvariantResidualDecomposer().fit(np.zeros((n_images, 3, 4)))
