"""One home each: lazy re-exports (skicr._utils.lazy) and the registration hooks of the backbones."""

import pytest

import skicr
import skicr.extraction as extraction
import skicr.monitoring as monitoring
from skicr._utils.lazy import lazy_exports
from skicr.extraction import backbones, load_backbone
from skicr.extraction.backbones import _registry


def test_lazy_names_resolve_to_their_home():
    import skicr.streaming

    assert extraction.fit_from_loader is skicr.streaming.fit_from_loader
    assert skicr.ICRMonitor is monitoring.ICRMonitor
    assert skicr.models.__name__ == "skicr.models"
    with pytest.raises(AttributeError, match="module 'skicr.extraction' has no attribute 'nope'"):
        extraction.nope


def test_the_extraction_package_lists_every_adapter_once():
    assert set(backbones.__all__) <= set(extraction.__all__)
    assert len(extraction.__all__) == len(set(extraction.__all__))
    for name in extraction.__all__:
        assert getattr(extraction, name) is not None
    assert dir(extraction) == sorted(extraction.__all__)


def test_lazy_exports_relative_and_absolute_names():
    getattr_, dir_ = lazy_exports("skicr.metrics", {"icr_score": "._icr", "ViewArray": "skicr.views"},
                                  submodules=["views"])
    from skicr.metrics import icr_score
    from skicr.views import ViewArray

    assert getattr_("icr_score") is icr_score and getattr_("ViewArray") is ViewArray
    with pytest.raises(AttributeError, match="'skicr.metrics' has no attribute 'other'"):
        getattr_("other")


def test_files_are_read_by_the_registered_reader(tmp_path, monkeypatch):
    from skicr.models import load_release_file

    assert _registry.file_reader() is load_release_file  # the default, by qualified name
    seen = []

    def reader(path, arch, **options):
        seen.append((path.name, arch, sorted(options)))
        return "an adapter"

    monkeypatch.setattr(_registry, "_FILE_READERS", list(_registry._FILE_READERS))
    assert _registry.register_file_reader(reader) is reader
    (tmp_path / "net.bin").write_bytes(b"x")
    assert load_backbone(tmp_path / "net.bin", arch="SiT") == "an adapter"
    assert seen == [("net.bin", "SiT", ["class_label", "device", "latent_scale", "model_kwargs", "vae"])]
    with pytest.raises(TypeError, match="reader must be callable"):
        _registry.register_file_reader(3)
