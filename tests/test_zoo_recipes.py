"""benchmarks/zoo/train_zoo.py: the table of recipes builds the networks the stored zoo weights came from."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "benchmarks" / "zoo" / "weights"
RECORDS = sorted(WEIGHTS.glob("*.json"))


@pytest.fixture(scope="module")
def zoo():
    spec = importlib.util.spec_from_file_location("train_zoo", ROOT / "benchmarks" / "zoo" / "train_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_recipe_has_every_column(zoo):
    assert len(zoo.SPECS) == len(zoo.RECIPES) == len({row[0] for row in zoo.RECIPES})
    for name, spec in zoo.SPECS.items():
        assert set(spec) == {*zoo._COLUMNS, "batch"}, name
        assert spec["save"][-1][0] == spec["steps"], name  # the converged checkpoint is the last
        assert spec["param"] in ("edm", "vp_epsilon", "flow")


@pytest.mark.skipif(not RECORDS, reason="no zoo weights in benchmarks/zoo/weights")
@pytest.mark.parametrize("record", [
    # diffusers models import diffusers (seconds)
    pytest.param(path, marks=[pytest.mark.slow] if json.loads(path.read_text())["architecture"] == "UNet2DModel"
                 else [], id=path.stem)
    for path in RECORDS
])
def test_the_recipe_builds_the_stored_network(zoo, record):
    from skicr.datasets import load_digits_images, make_shapes_images

    stored = json.loads(record.read_text())
    spec = zoo.SPECS[stored["recipe"]]
    assert (spec["data"], spec["arch"], spec["param"], spec["lr"]) == (
        stored["data"], stored["architecture"], stored["parameterization"], stored["lr"])
    images = (load_digits_images(return_y=False)[:1] if spec["data"] == "digits" else
              make_shapes_images(n_images=10, image_size=zoo.SHAPES_SIZE, random_state=0)[0])
    _, channels, size, _ = zoo.images_to_tensor(images).shape
    net = zoo.build(spec, channels, size)
    assert sum(p.numel() for p in net.parameters()) == stored["n_parameters"]
    weights = torch.load(record.with_suffix(".pt"), map_location="cpu", weights_only=True)
    state = weights.get("state_dict", weights)
    if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in state.items()} == shapes
