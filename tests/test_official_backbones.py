"""The seed paper's backbones: official EDM pickles and DiT / SiT state dicts.

Ground truth is ``shared/fixtures`` (tiny random-weight files written by the
official code of each release, with reference outputs and inner
activations; see its README). The EDM pickles embed NVlabs source under a
non-commercial licence, so they are read in place and never copied here.
Everything skips when the folder is absent.
"""

import json
import os
import pickle
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from skicr.models import (
    DiT,
    SiT,
    UnsafePickleError,
    build_transformer,
    load_edm_pickle,
    read_edm_pickle,
)
from skicr.models._edm_pickle import PersistentRecord, _ContainerRecord

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [Path("/work/shared/fixtures"), ROOT.parent / "shared" / "fixtures"]
FIXTURES = next((p for p in _CANDIDATES if (p / "README.md").is_file()), None)

pytestmark = pytest.mark.skipif(FIXTURES is None, reason="shared/fixtures is not available")

EDM_FIXTURES = ["edm-tiny-16x16-uncond-vp", "edm-tiny-32x32-uncond-vp", "edm-tiny-adm"]
TOL = dict(atol=1e-5, rtol=1e-5)  # the fixtures README's tolerance


def _reference(name):
    return torch.load(FIXTURES / f"{name}.reference.pt", weights_only=True)


def _run_with_hooks(net, names, *args):
    modules = dict(net.named_modules())
    captured = {}
    handles = [
        modules[name].register_forward_hook(
            lambda module, inputs, output, name=name: captured.__setitem__(name, output.clone())
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            output = net(*args)
    finally:
        for handle in handles:
            handle.remove()
    return output, captured


# ---------------------------------------------------------------- EDM: equality
@pytest.mark.parametrize("name", EDM_FIXTURES)
def test_edm_pickle_reproduces_reference(name):
    net = load_edm_pickle(FIXTURES / f"{name}.pkl")
    ref = _reference(name)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    layer_names = {n for n, _ in net.named_modules()}
    assert set(ref["inner_module_names"]) <= layer_names
    output, inner = _run_with_hooks(
        net, ref["inner_module_names"], ref["x"], ref["sigma"], ref.get("class_labels")
    )
    torch.testing.assert_close(output, ref["output"], **TOL)
    for layer in ref["inner_module_names"]:
        torch.testing.assert_close(inner[layer], ref["inner_outputs"][layer], **TOL)


@pytest.mark.parametrize(
    "name, n_entries, first, last",
    [
        ("edm-tiny-16x16-uncond-vp", 147, "model.map_augment.weight",
         "model.dec.16x16_aux_conv.bias"),
        ("edm-tiny-32x32-uncond-vp", 209, "model.map_augment.weight",
         "model.dec.32x32_aux_conv.bias"),
        ("edm-tiny-adm", 149, "model.map_layer0.weight", "model.out_conv.bias"),
    ],
)
def test_edm_state_dict_layout_matches_release(name, n_entries, first, last):
    keys = list(load_edm_pickle(FIXTURES / f"{name}.pkl").state_dict())
    assert (len(keys), keys[0], keys[-1]) == (n_entries, first, last)


@pytest.mark.parametrize("name", EDM_FIXTURES)
def test_edm_records_carry_class_names_and_kwargs(name):
    snapshot = read_edm_pickle(FIXTURES / f"{name}.pkl")
    recorded = json.loads((FIXTURES / f"{name}.json").read_text())
    assert sorted(snapshot) == sorted(recorded["snapshot_keys"])
    ema = snapshot["ema"]
    assert isinstance(ema, PersistentRecord) and ema.class_name == "EDMPrecond"
    assert ema.init_kwargs == recorded["constructor_kwargs"]
    assert snapshot["loss_fn"].class_name == "EDMLoss"
    assert "module_src" not in dir(ema)  # the source is dropped while reading


def test_edm_use_fp16_flag_is_kept_and_cpu_runs_float32():
    net = load_edm_pickle(FIXTURES / "edm-tiny-adm.pkl")
    assert net.use_fp16 and net.label_dim == 10
    out = net(torch.zeros(1, 3, 16, 16), torch.tensor([1.0]))
    assert out.dtype == torch.float32


# ---------------------------------------------------------------- DiT / SiT
@pytest.mark.parametrize("name, cls", [("sit-tiny", SiT), ("dit-tiny", DiT)])
def test_transformer_state_dict_reproduces_reference(name, cls):
    kwargs = json.loads((FIXTURES / f"{name}.json").read_text())["constructor_kwargs"]
    net = cls(**kwargs)
    net.load_state_dict(torch.load(FIXTURES / f"{name}.pt", weights_only=True), strict=True)
    net.eval()
    ref = _reference(name)
    assert set(ref["inner_module_names"]) <= {n for n, _ in net.named_modules()}
    output, inner = _run_with_hooks(net, ref["inner_module_names"], ref["x"], ref["t"], ref["y"])
    assert output.shape == ref["output"].shape
    torch.testing.assert_close(output, ref["output"], **TOL)
    for layer in ref["inner_module_names"]:
        torch.testing.assert_close(inner[layer], ref["inner_outputs"][layer], **TOL)


def test_fixed_pos_embed_equals_release_table():
    state = torch.load(FIXTURES / "sit-tiny.pt", weights_only=True)
    net = SiT(input_size=8, hidden_size=64, depth=2, num_heads=2, num_classes=10)
    torch.testing.assert_close(net.pos_embed.detach(), state["pos_embed"], atol=1e-7, rtol=0)


@pytest.mark.parametrize("name", ["DiT-XL/2", "SiT-XL-2", "SiT-B/4", "DiT-S/8", "SiT-L/2"])
def test_named_configs_have_release_layout(name):
    with torch.device("meta"):
        net = build_transformer(name)
    small = torch.load(FIXTURES / "dit-tiny.pt", weights_only=True)
    pattern = {k.replace("blocks.1.", "blocks.0.") for k in small}
    assert {k for k in net.state_dict() if not k.startswith("blocks.")
            or k.startswith("blocks.0.")} == pattern
    depth, hidden, _ = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12),
                        "S": (12, 384, 6)}[name.split("-")[1].split("/")[0]]
    patch = int(name[-1])
    assert len(net.blocks) == depth
    assert net.x_embedder.proj.weight.shape == (hidden, 4, patch, patch)
    assert net.pos_embed.shape == (1, (32 // patch) ** 2, hidden)
    assert net.y_embedder.embedding_table.num_embeddings == 1001


def test_dit_xl2_parameter_count_is_the_papers():
    with torch.device("meta"):
        net = build_transformer("DiT-XL/2")
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert round(trainable / 1e6) == 675  # DiT paper, Table 1 (675M)


def test_unknown_transformer_name_errors():
    with pytest.raises(ValueError, match="Unknown transformer config 'DiT-XXL/2'"):
        build_transformer("DiT-XXL/2")
    with pytest.raises(ValueError, match="DiT-S/2"):
        build_transformer("SiT-S/3")


# ---------------------------------------------------------------- crafted pickles
MARKER_SOURCE = "open({marker!r}, 'w').write('the embedded source ran')\n"


def _fake_reconstruct(meta):  # stands in for torch_utils.persistence._reconstruct_persistent_obj
    raise AssertionError("only used as a pickled name")


_fake_reconstruct.__module__ = "torch_utils.persistence"
_fake_reconstruct.__qualname__ = _fake_reconstruct.__name__ = "_reconstruct_persistent_obj"


class _EDMFormatPickler(pickle.Pickler):
    """Writes records back in the persistence format, with a chosen module source."""

    def __init__(self, handle, module_src, rename=None):
        super().__init__(handle, protocol=4)
        self.module_src = module_src
        self.rename = rename or {}

    def reducer_override(self, obj):
        if isinstance(obj, PersistentRecord):
            meta = dict(type="class", version=obj.version, module_src=self.module_src,
                        class_name=self.rename.get(obj.class_name, obj.class_name),
                        state=obj.state)
            return _fake_reconstruct, (meta,)
        return NotImplemented


def _as_real_containers(record):
    """Turn container stand-ins back into torch ModuleDicts (pickled as torch pickles them)."""
    modules = record.state.get("_modules") or {}
    for key, child in modules.items():
        if isinstance(child, (PersistentRecord, _ContainerRecord)):
            _as_real_containers(child)
        if isinstance(child, _ContainerRecord):
            container = nn.ModuleDict.__new__(nn.ModuleDict)
            container.__dict__.update(child.state)
            modules[key] = container


@pytest.fixture
def fake_persistence(monkeypatch):
    package = types.ModuleType("torch_utils")
    module = types.ModuleType("torch_utils.persistence")
    module._reconstruct_persistent_obj = _fake_reconstruct
    package.persistence = module
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)


def _craft(path, source, rename=None, name="edm-tiny-16x16-uncond-vp"):
    snapshot = read_edm_pickle(FIXTURES / f"{name}.pkl")
    _as_real_containers(snapshot["ema"])
    with open(path, "wb") as handle:
        _EDMFormatPickler(handle, source, rename).dump(snapshot)


def _official_style_load(path, tmp_path):
    """Positive control: unpickle as the official code does (exec of module_src)."""
    shim = tmp_path / "shim" / "torch_utils"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("")
    (shim / "persistence.py").write_text(textwrap.dedent("""
        import types
        def _reconstruct_persistent_obj(meta):
            module = types.ModuleType("_imported_module")
            exec(compile(meta["module_src"], "<module_src>", "exec"), module.__dict__)
            return None
    """))
    code = f"import pickle; pickle.load(open({str(path)!r}, 'rb'))"
    env = dict(os.environ, PYTHONPATH=str(shim.parent))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_embedded_source_is_never_run(tmp_path, fake_persistence):
    marker = tmp_path / "marker-source"
    crafted = tmp_path / "crafted.pkl"
    _craft(crafted, MARKER_SOURCE.format(marker=str(marker)))
    net = load_edm_pickle(crafted)
    assert not marker.exists()
    ref = _reference("edm-tiny-16x16-uncond-vp")
    with torch.no_grad():
        torch.testing.assert_close(net(ref["x"], ref["sigma"]), ref["output"], **TOL)
    assert not marker.exists()


@pytest.mark.slow  # a subprocess importing torch
def test_crafted_source_runs_under_official_style_loading(tmp_path, fake_persistence):
    # positive control for the test above: the crafted file's source is live
    marker = tmp_path / "marker-source"
    crafted = tmp_path / "crafted.pkl"
    _craft(crafted, MARKER_SOURCE.format(marker=str(marker)))
    _official_style_load(crafted, tmp_path)
    assert marker.exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('reduce ran')",)


def test_reduce_payload_is_refused_and_not_run(tmp_path, fake_persistence):
    marker = tmp_path / "marker-reduce"
    snapshot = read_edm_pickle(FIXTURES / "edm-tiny-16x16-uncond-vp.pkl")
    _as_real_containers(snapshot["ema"])
    snapshot["ema"].state["_init_kwargs"]["dropout"] = _Evil(marker)  # nested payload
    crafted = tmp_path / "evil.pkl"
    with open(crafted, "wb") as handle:
        _EDMFormatPickler(handle, "pass\n").dump(snapshot)
    with pytest.raises(UnsafePickleError, match=r"builtins\.exec"):
        load_edm_pickle(crafted)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Evil(marker)))  # positive control: the payload is live
    assert marker.exists()


@pytest.mark.parametrize("payload", [os.system, subprocess.Popen, eval])
def test_any_global_outside_allow_list_is_refused(tmp_path, payload):
    crafted = tmp_path / "other.pkl"
    crafted.write_bytes(pickle.dumps({"ema": payload}))
    with pytest.raises(UnsafePickleError, match="refusing to load global"):
        read_edm_pickle(crafted)


def test_unsupported_top_level_class_names_it(tmp_path, fake_persistence):
    crafted = tmp_path / "renamed.pkl"
    _craft(crafted, "pass\n", rename={"EDMPrecond": "StyleGAN2Generator"})
    with pytest.raises(ValueError, match="'StyleGAN2Generator'.*not supported"):
        load_edm_pickle(crafted)


def test_unsupported_inner_class_names_it_and_its_place(tmp_path, fake_persistence):
    crafted = tmp_path / "renamed-inner.pkl"
    _craft(crafted, "pass\n", rename={"PositionalEmbedding": "LearnedEmbedding"})
    with pytest.raises(ValueError, match="'LearnedEmbedding' at model.map_noise"):
        load_edm_pickle(crafted)


def test_mismatched_inner_class_is_an_error(tmp_path, fake_persistence):
    crafted = tmp_path / "swapped.pkl"
    _craft(crafted, "pass\n", rename={"PositionalEmbedding": "FourierEmbedding"})
    with pytest.raises(ValueError, match="model.map_noise is a FourierEmbedding in the file"):
        load_edm_pickle(crafted)


def test_missing_snapshot_key_errors(tmp_path):
    with pytest.raises(ValueError, match="no 'model' entry"):
        load_edm_pickle(FIXTURES / "edm-tiny-16x16-uncond-vp.pkl", key="model")


# ---------------------------------------------------------------- adapters
from skicr import load_backbone  # noqa: E402
from skicr.extraction import (  # noqa: E402
    DiTReleaseBackbone,
    EDMReleaseBackbone,
    SiTReleaseBackbone,
    as_backbone,
    dit_linear_alphas_cumprod,
    list_layers,
)

TINY = {"model_kwargs": {"num_heads": 2}}  # the fixtures' width (64) is not a release size


@pytest.mark.parametrize("name", EDM_FIXTURES)
def test_edm_adapter_feeds_sigma_and_one_hot_class(name):
    ref = _reference(name)
    for i in range(2):
        label = int(ref["class_idx"][i]) if "class_idx" in ref else None
        backbone = load_backbone(FIXTURES / f"{name}.pkl", class_label=label)
        assert isinstance(backbone, EDMReleaseBackbone)
        with torch.no_grad():
            out = backbone.forward(ref["x"][i:i + 1], float(ref["sigma"][i]))
        torch.testing.assert_close(out[0], ref["output"][i], **TOL)


def test_edm_adapter_defaults_and_errors():
    backbone = load_backbone(FIXTURES / "edm-tiny-32x32-uncond-vp.pkl")
    assert backbone.default_layer == "model.dec.8x8_in1"
    assert backbone.in_channels == 3
    assert backbone.c_noise(2.0) == pytest.approx(float(torch.tensor(2.0).log()) / 4)
    with pytest.raises(ValueError, match="class-conditional .* pass class_label"):
        load_backbone(FIXTURES / "edm-tiny-adm.pkl")
    with pytest.raises(ValueError, match=r"class_label must be in \[0, 9\]"):
        load_backbone(FIXTURES / "edm-tiny-adm.pkl", class_label=10)
    with pytest.raises(ValueError, match="unconditional"):
        load_backbone(FIXTURES / "edm-tiny-32x32-uncond-vp.pkl", class_label=1)
    with pytest.raises(ValueError, match="sigma > 0"):
        backbone.check_sigma(0.0)


def test_sit_adapter_uses_data_at_one_time_and_velocity():
    ref = _reference("sit-tiny")
    for i in range(2):
        t = float(ref["t"][i])
        backbone = load_backbone(FIXTURES / "sit-tiny.pt", class_label=int(ref["y"][i]), **TINY)
        assert isinstance(backbone, SiTReleaseBackbone)
        sigma = 1 / t - 1  # t = 1 / (1 + sigma): t = 0 noise, t = 1 data
        assert backbone.time(sigma) == pytest.approx(t)
        noisy = ref["x"][i:i + 1] * (1 + sigma)  # x0 + sigma eps, whose x_t is ref["x"]
        with torch.no_grad():
            out = backbone.forward(noisy, sigma)
        torch.testing.assert_close(out[0], ref["output"][i], **TOL)


def test_dit_adapter_uses_nearest_linear_schedule_timestep():
    ref = _reference("dit-tiny")
    abar = dit_linear_alphas_cumprod()
    for i in range(2):
        step = int(ref["t"][i])
        backbone = load_backbone(FIXTURES / "dit-tiny.pt", class_label=int(ref["y"][i]), **TINY)
        assert isinstance(backbone, DiTReleaseBackbone)
        sigma = backbone.sigma_at(step)
        assert sigma == pytest.approx(((1 - abar[step]) / abar[step]) ** 0.5)
        assert backbone.timestep(sigma) == step
        noisy = ref["x"][i:i + 1] / float(abar[step]) ** 0.5  # sqrt(abar)(x0 + sigma eps) = x
        with torch.no_grad():
            out = backbone.forward(noisy, sigma)
        torch.testing.assert_close(out[0], ref["output"][i], **TOL)


def test_dit_schedule_is_ddpm_linear():
    diffusers = pytest.importorskip("diffusers")
    peer = diffusers.DDPMScheduler(beta_schedule="linear").alphas_cumprod.double().numpy()
    ours = dit_linear_alphas_cumprod()
    assert ours.shape == (1000,)
    assert abs(ours - peer).max() < 1e-6


def test_dit_adapter_reports_clamped_and_far_timesteps():
    backbone = load_backbone(FIXTURES / "dit-tiny.pt", **TINY)
    assert backbone.class_label == 10  # the null class
    with pytest.warns(UserWarning, match="outside the VP schedule's range"):
        backbone.check_sigma(1e-3)
    with pytest.warns(UserWarning, match=r"timestep 1 \(sigma 0.0148"):
        backbone.check_sigma(0.0125)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone.check_sigma(backbone.sigma_at(500))


def test_transformer_arch_from_name_and_mismatch(tmp_path):
    with pytest.raises(ValueError, match="depth 2, width 64, patch 2; SiT-XL/2 has depth 28"):
        load_backbone(FIXTURES / "sit-tiny.pt", arch="SiT-XL/2")
    renamed = tmp_path / "SiT-B-4-256x256.pt"
    renamed.write_bytes((FIXTURES / "sit-tiny.pt").read_bytes())
    with pytest.raises(ValueError, match="SiT-B/4 has depth 12"):
        load_backbone(renamed)
    anonymous = tmp_path / "checkpoint.pt"
    anonymous.write_bytes((FIXTURES / "dit-tiny.pt").read_bytes())
    with pytest.raises(ValueError, match="DiT or a SiT checkpoint"):
        load_backbone(anonymous)
    assert isinstance(load_backbone(anonymous, arch="DiT", **TINY), DiTReleaseBackbone)
    with pytest.raises(ValueError, match="number of attention heads is unknown"):
        load_backbone(anonymous, arch="DiT")


def test_training_checkpoint_uses_ema_weights(tmp_path):
    state = torch.load(FIXTURES / "sit-tiny.pt", weights_only=True)
    import argparse

    zeroed = {k: torch.zeros_like(v) for k, v in state.items()}
    path = tmp_path / "0400000.pt"
    torch.save({"model": zeroed, "ema": state, "opt": {}, "args": argparse.Namespace(a=1)}, path)
    backbone = load_backbone(path, arch="SiT", **TINY)
    torch.testing.assert_close(backbone.module.blocks[0].attn.qkv.weight,
                               state["blocks.0.attn.qkv.weight"])


def test_reference_layer_names_are_extractor_layers():
    from skicr import FeatureExtractor

    images = torch.rand(3, 3, 32, 32)
    extractor = FeatureExtractor(load_backbone(FIXTURES / "edm-tiny-32x32-uncond-vp.pkl"),
                                 layer="model.enc.8x8_block0", sigma=0.5, n_views=2,
                                 random_state=0)
    assert extractor.fit_transform(images).shape == (3, 2 * 32)
    latents = torch.rand(3, 4, 8, 8)
    extractor = FeatureExtractor(load_backbone(FIXTURES / "sit-tiny.pt", **TINY), layer="blocks.0",
                                 sigma=0.5, n_views=2, augment=None, random_state=0)
    assert extractor.fit_transform(latents).shape == (3, 2 * 64)


def test_vae_folder_maps_pixels_to_latents(tmp_path):
    pytest.importorskip("diffusers")
    from skicr.extraction._testing import tiny_vae

    vae = tiny_vae(seed=0)
    vae.save_pretrained(tmp_path / "vae")
    backbone = load_backbone(FIXTURES / "sit-tiny.pt", vae=tmp_path / "vae", **TINY)
    assert backbone.in_channels == 3
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        latents = backbone.prepare(pixels)
    assert latents.shape == (2, 4, 8, 8)
    torch.testing.assert_close(latents, expected)
    from skicr import FeatureExtractor

    features = FeatureExtractor(backbone, sigma=0.5, n_views=2, random_state=0).fit_transform(
        (pixels + 1) / 2)
    assert features.shape == (2, 2 * 64) and torch.isfinite(torch.as_tensor(features)).all()


def test_latents_given_directly_through_latent_scale():
    backbone = load_backbone(FIXTURES / "sit-tiny.pt", **TINY)
    backbone.latent_scale = 4.0
    latents = torch.randn(2, 4, 8, 8).clamp(-4, 4)
    torch.testing.assert_close(backbone.prepare(((latents / 4 + 1) / 2) * 2 - 1), latents)
    with pytest.raises(ValueError, match="latent_scale must be a finite number > 0"):
        SiTReleaseBackbone(backbone.module, latent_scale=0)


def test_paths_and_networks_reach_the_adapters_through_the_extractor():
    from skicr import FeatureExtractor

    path = FIXTURES / "edm-tiny-16x16-uncond-vp.pkl"
    images = torch.rand(3, 1, 16, 16)
    by_path = FeatureExtractor(str(path), layer="model.dec.8x8_in0", sigma=0.5, n_views=2,
                               random_state=0).fit_transform(images)
    net = load_edm_pickle(path)
    assert isinstance(as_backbone(net), EDMReleaseBackbone)  # the network's own hook
    by_net = FeatureExtractor(net, layer="model.dec.8x8_in0", sigma=0.5, n_views=2,
                              random_state=0).fit_transform(images)
    torch.testing.assert_close(torch.as_tensor(by_path), torch.as_tensor(by_net))
    assert "model.enc.8x8_block0" in list_layers(net)
    sit = SiT(input_size=8, hidden_size=64, depth=2, num_heads=2, num_classes=10)
    dit = DiT(input_size=8, hidden_size=64, depth=2, num_heads=2, num_classes=10)
    assert isinstance(as_backbone(sit), SiTReleaseBackbone)
    assert isinstance(as_backbone(dit), DiTReleaseBackbone)
    with pytest.raises(TypeError, match="needs a skicr.models.DiT"):
        DiTReleaseBackbone(sit)
    with pytest.raises(TypeError, match="needs a skicr.models.SiT"):
        SiTReleaseBackbone(dit)


def test_load_backbone_rejects_other_files_and_misplaced_options(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="neither an EDM pickle nor a torch checkpoint"):
        load_backbone(junk)
    with pytest.raises(FileNotFoundError, match="neither a file nor a directory"):
        load_backbone(tmp_path / "missing.pkl")
    with pytest.raises(ValueError, match="apply to DiT / SiT release files"):
        load_backbone(tmp_path, arch="SiT-XL/2")
    with pytest.raises(ValueError, match="EDM networks work on pixels"):
        load_backbone(FIXTURES / "edm-tiny-16x16-uncond-vp.pkl", vae=tmp_path)


def test_load_backbone_reads_skicr_weights_files(tmp_path):
    from skicr.extraction import EDMBackbone
    from skicr.models import SmallUNet, save_denoiser

    path = tmp_path / "mine.pt"
    save_denoiser(SmallUNet(), path)
    assert isinstance(load_backbone(path), EDMBackbone)


@pytest.mark.slow  # an end-to-end run of the command
def test_cli_scan_reads_an_edm_pickle(tmp_path, capsys):
    import numpy as np

    from skicr import cli

    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).random((24, 1, 16, 16)).astype(np.float32))
    out = tmp_path / "scan"
    code = cli.main(["scan", "--model", str(FIXTURES / "edm-tiny-16x16-uncond-vp.pkl"),
                     "--images", str(images), "--layer", "model.enc.8x8_block0",
                     "--sigmas", "0.2,2", "--views", "2", "--cv", "2", "--quiet",
                     "--out", str(out)])
    assert code == 0
    report = json.loads((out / "scan.json").read_text())
    assert "PrecondEDM" in report["settings"]["model"]
    assert report["settings"]["layer"] == "model.enc.8x8_block0"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "sit-tiny.pt", "--arch", "SiT-XL/2"], "SiT-XL/2 has depth 28"),
        (["--model", "sit-tiny.pt", "--arch", "SiT-XXL/2"], "arch must be a release name"),
        (["--model", "edm-tiny-adm.pkl"], "pass class_label"),
        (["--arch", "SiT-XL/2"], "need --model"),
    ],
)
def test_cli_release_file_errors(extra, message, capsys):
    from skicr import cli

    args = [str(FIXTURES / a) if a.endswith((".pt", ".pkl")) else a for a in extra]
    code = cli.main(["scan", *args, "--sigmas", "0.2,2", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ---------------------------------------------------------------- other release configs
@pytest.mark.parametrize("options", [
    dict(embedding_type="fourier", encoder_type="residual", channel_mult_noise=2,
         resample_filter=(1, 3, 3, 1)),  # NCSN++
    dict(encoder_type="skip", decoder_type="skip"),
])
def test_song_unet_variants_run(options):
    from skicr.models import SongUNet

    net = SongUNet(16, 3, 3, model_channels=16, channel_mult=(1, 2, 2), num_blocks=1,
                   attn_resolutions=(8,), **options).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 16, 16), torch.randn(2), None)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_vp_and_iddpm_preconditioning_are_consistent():
    from skicr.models import PrecondIDDPM, PrecondVP

    small = dict(model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,))
    vp = PrecondVP(16, 1, **small).eval()
    t = torch.tensor([1e-3, 0.1, 0.5, 1.0])
    torch.testing.assert_close(vp.sigma_inv(vp.sigma(t)), t, rtol=1e-4, atol=1e-6)
    assert vp.sigma_max == pytest.approx(float(vp.sigma(1)))
    iddpm = PrecondIDDPM(16, 3, **dict(small, model_channels=32)).eval()
    assert iddpm.model.out_conv.out_channels == 6  # mean and variance outputs
    levels = iddpm.u[[0, 10, 500, 998]]
    torch.testing.assert_close(iddpm.round_sigma(levels), levels)
    assert iddpm.round_sigma(levels, return_index=True).tolist() == [0, 10, 500, 998]
    assert torch.all(iddpm.u[:-1] > iddpm.u[1:])  # decreasing noise levels, u[M] = 0
    with torch.no_grad():
        out = iddpm(torch.zeros(2, 3, 16, 16), torch.tensor([0.5, 5.0]))
    assert out.shape == (2, 3, 16, 16)
