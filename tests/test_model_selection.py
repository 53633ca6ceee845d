"""NoiseLevelSelector: the grid logic on a fake extractor with a known optimum."""

import warnings

import numpy as np
import pandas as pd
import pytest
from joblib import parallel_config
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold
from sklearn.utils._param_validation import InvalidParameterError

from skicr import NoiseLevelSelector
from skicr.views import ViewArray
from skicr.metrics import icr_score

SIGMAS = np.geomspace(0.01, 1.0, 5)  # the fake optimum 0.1 is the middle point
BEST_SIGMA = 0.1


class FakeExtractor(TransformerMixin, BaseEstimator):
    """Views whose invariant SNR is U-shaped in log sigma, peaking at ``best_sigma``.

    Each view is the image's first ``n_features`` pixels plus Gaussian noise of
    std ``0.3 * (sigma / best_sigma + best_sigma / sigma)``: the residual is
    smallest at ``best_sigma`` and symmetric in log sigma around it. The
    class attribute ``n_transform_calls`` counts the "backbone" runs.
    """

    n_transform_calls = 0

    def __init__(self, sigma=1.0, n_views=3, n_features=6, best_sigma=BEST_SIGMA,
                 random_state=None):
        self.sigma = sigma
        self.n_views = n_views
        self.n_features = n_features
        self.best_sigma = best_sigma
        self.random_state = random_state

    def fit(self, images, y=None):
        self.n_features_out_ = self.n_features
        return self

    def transform_views(self, images):
        type(self).n_transform_calls += 1
        images = np.asarray(images, dtype=float).reshape(len(images), -1)
        signal = images[:, : self.n_features]
        rng = np.random.default_rng(self.random_state)
        noise_std = 0.3 * (self.sigma / self.best_sigma + self.best_sigma / self.sigma)
        eps = rng.standard_normal((len(images), self.n_views, self.n_features))
        return signal[:, None, :] + noise_std * eps

    def transform(self, images):
        views = self.transform_views(images)
        return ViewArray(views.reshape(len(views), -1), self.n_views)


class NaNExtractor(FakeExtractor):
    def transform_views(self, images):
        views = super().transform_views(images)
        views[0, 0, 0] = np.nan
        return views


def make_images(n_images=60, n_classes=3, n_pixels=8, seed=0):
    """Images as class centre + spread, so a probe can read the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_images) % n_classes
    centres = 2.0 * rng.standard_normal((n_classes, n_pixels))
    images = centres[y] + 0.7 * rng.standard_normal((n_images, n_pixels))
    return images, y


@pytest.fixture
def data():
    return make_images()


def fit_selector(images, y=None, **params):
    params.setdefault("random_state", 0)
    params.setdefault("cv", 3)
    selector = NoiseLevelSelector(FakeExtractor(), SIGMAS, **params)
    return selector.fit(images, y)


def test_best_sigma_is_the_known_minimum(data):
    images, _ = data
    selector = fit_selector(images)
    assert selector.best_sigma_ == pytest.approx(BEST_SIGMA)
    assert selector.best_index_ == 2
    icr = selector.cv_results_["mean_icr"]
    # U-shape: falls to the optimum, then rises
    assert np.all(np.diff(icr[:3]) < 0) and np.all(np.diff(icr[2:]) > 0)
    assert np.all((icr > 0) & (icr <= 1))
    assert selector.best_score_ == pytest.approx(-icr[2])
    assert selector.cv_results_["rank_icr"][2] == 1


def test_cv_results_keys_and_shapes(data):
    images, _ = data
    selector = fit_selector(images, cv=3)
    results = selector.cv_results_
    expected = {
        "sigma", "mean_icr", "std_icr", "rank_icr", "split0_icr", "split1_icr", "split2_icr",
        "extract_time", "mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time",
        "params", "param_sigma", "decision",
    }
    for name in ("icr_insample", "lidar", "rankme"):  # every label-free criterion, same folds
        expected |= {f"mean_{name}", f"std_{name}", f"rank_{name}"}
        expected |= {f"split{k}_{name}" for k in range(3)}
    assert set(results) == expected  # no probe keys without a probe
    for key, value in results.items():
        assert isinstance(value, np.ndarray) and value.shape == (SIGMAS.size,), key
        if key not in ("params", "decision"):  # dicts, as GridSearchCV's; verdict strings
            assert not np.any(np.isnan(value)), key
    assert set(results["decision"]) == {selector.decision_}
    assert list(results["params"]) == [{"sigma": s} for s in SIGMAS]
    np.testing.assert_array_equal(results["param_sigma"], results["sigma"])
    np.testing.assert_allclose(results["sigma"], SIGMAS)
    splits = np.stack([results[f"split{k}_icr"] for k in range(3)], axis=1)
    np.testing.assert_allclose(results["mean_icr"], splits.mean(axis=1))
    np.testing.assert_allclose(results["std_icr"], splits.std(axis=1))
    assert selector.n_splits_ == 3
    frame = pd.DataFrame(results)
    assert frame.shape == (SIGMAS.size, len(expected))


def test_same_random_state_same_numbers(data):
    images, _ = data
    first = fit_selector(images, random_state=7).cv_results_
    second = fit_selector(images, random_state=7).cv_results_
    other = fit_selector(images, random_state=8).cv_results_
    np.testing.assert_array_equal(first["mean_icr"], second["mean_icr"])
    assert not np.allclose(first["mean_icr"], other["mean_icr"])


def _assert_n_jobs_do_not_matter(images, y, backend="loky"):
    probe = LogisticRegression(max_iter=500)
    serial = fit_selector(images, y, probe=probe, n_jobs=1)
    with parallel_config(backend=backend):
        parallel = fit_selector(images, y, probe=probe, n_jobs=2)
    for key in ("mean_icr", "std_icr", "split1_icr", "mean_probe_accuracy"):
        np.testing.assert_allclose(serial.cv_results_[key], parallel.cv_results_[key], rtol=1e-10)
    assert serial.best_sigma_ == parallel.best_sigma_


# joblib's default (loky) process pool: its workers each import skicr, sklearn and torch
# (17 s of wall time at a load of 3, 0.5 s of CPU of it in this process)
@pytest.mark.slow
def test_results_do_not_depend_on_n_jobs(data):
    _assert_n_jobs_do_not_matter(*data)


def test_results_do_not_depend_on_n_jobs_in_threads(data):
    # the same claim without starting processes (what a run that deselects slow keeps)
    _assert_n_jobs_do_not_matter(*data, backend="threading")


def test_joblib_backend_is_configurable(data):
    images, _ = data
    reference = fit_selector(images).cv_results_["mean_icr"]
    with parallel_config(backend="threading", n_jobs=2):
        threaded = fit_selector(images).cv_results_["mean_icr"]
    np.testing.assert_allclose(reference, threaded, rtol=1e-10)


@pytest.mark.parametrize("cv", [None, 1, 2, 5])
def test_backbone_runs_once_per_sigma_whatever_the_folds(data, cv):
    images, _ = data
    FakeExtractor.n_transform_calls = 0
    fit_selector(images, cv=cv, refit=False, n_jobs=1)
    assert FakeExtractor.n_transform_calls == SIGMAS.size
    FakeExtractor.n_transform_calls = 0
    fit_selector(images, cv=cv, refit=True, n_jobs=1)
    # refit extracts once more, at the best sigma only
    assert FakeExtractor.n_transform_calls == SIGMAS.size + 1


def test_in_sample_icr_without_split(data):
    images, _ = data
    selector = fit_selector(images, cv=1, refit=False)
    assert selector.n_splits_ == 1
    assert set(selector.cv_results_) >= {"split0_icr", "mean_icr"}
    np.testing.assert_array_equal(selector.cv_results_["std_icr"], 0.0)
    # matches the functional ICR on all images, extracted with the selector's seed
    seeded = selector._seeded_extractor(
        int(np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=2)[1])
    )
    views = seeded.set_params(sigma=SIGMAS[1]).fit(images).transform_views(images)
    # the default decomposer's ridge is the zoo study's tau = 1e-2
    assert selector.cv_results_["mean_icr"][1] == pytest.approx(icr_score(views, tau=1e-2),
                                                               rel=1e-8)
    assert selector.cv_results_["mean_icr"][1] != pytest.approx(icr_score(views), rel=1e-6)
    assert fit_selector(images, cv=None, refit=False).cv_results_["mean_icr"] == pytest.approx(
        selector.cv_results_["mean_icr"]
    )


def test_probe_accuracy_is_reported_not_used(data):
    images, y = data
    probe = LogisticRegression(max_iter=500)
    selector = fit_selector(images, y, probe=probe, cv=3)
    results = selector.cv_results_
    for key in ("mean_probe_accuracy", "std_probe_accuracy", "rank_probe_accuracy",
                "split0_probe_accuracy", "mean_probe_time"):
        assert results[key].shape == (SIGMAS.size,)
    accuracy = results["mean_probe_accuracy"]
    assert np.all((accuracy >= 0) & (accuracy <= 1))
    # the class signal is cleanest at the fake optimum, noisiest at the ends
    assert accuracy[2] > accuracy[0] and accuracy[2] > accuracy[-1]
    assert selector.best_index_ == int(np.argmin(results["mean_icr"]))

    # labels never move the label-free choice: shuffled labels, same sigma and ICR
    shuffled = np.random.default_rng(0).permutation(y)
    blind = fit_selector(images, shuffled, probe=probe, cv=3)
    assert blind.best_sigma_ == selector.best_sigma_
    np.testing.assert_array_equal(blind.cv_results_["mean_icr"], results["mean_icr"])

    chosen_by_probe = fit_selector(images, y, probe=probe, cv=3, scoring="probe")
    assert chosen_by_probe.best_index_ == int(np.argmax(accuracy))
    assert chosen_by_probe.best_score_ == pytest.approx(accuracy.max())


def test_probe_features_options(data):
    images, y = data
    probe = LogisticRegression(max_iter=500)
    first = fit_selector(images, y, probe=probe, probe_features="first_view")
    mean = fit_selector(images, y, probe=probe, probe_features="view_mean")
    # averaging the views removes noise: at the noisiest sigma the mean is easier to classify
    assert (mean.cv_results_["mean_probe_accuracy"][-1]
            >= first.cv_results_["mean_probe_accuracy"][-1])
    np.testing.assert_array_equal(first.cv_results_["mean_icr"], mean.cv_results_["mean_icr"])


def test_probe_without_labels_warns_and_is_skipped(data):
    images, _ = data
    with pytest.warns(UserWarning, match="no labels"):
        selector = fit_selector(images, probe=LogisticRegression())
    assert "mean_probe_accuracy" not in selector.cv_results_


def test_splitter_objects_and_groups(data):
    images, _ = data
    folds = list(KFold(3).split(images))
    from_list = fit_selector(images, cv=folds)
    from_splitter = fit_selector(images, cv=KFold(3))
    np.testing.assert_allclose(from_list.cv_results_["mean_icr"],
                               from_splitter.cv_results_["mean_icr"])
    groups = np.arange(len(images)) // 10
    grouped = NoiseLevelSelector(FakeExtractor(), SIGMAS, cv=GroupKFold(3), random_state=0)
    grouped.fit(images, groups=groups)
    assert grouped.n_splits_ == 3


def test_selector_seeds_an_unseeded_extractor_only(data):
    images, _ = data
    seeded = NoiseLevelSelector(FakeExtractor(random_state=3), SIGMAS, cv=1, random_state=0)
    other_seed = NoiseLevelSelector(FakeExtractor(random_state=3), SIGMAS, cv=1, random_state=1)
    # the extractor's own seed wins: the in-sample ICR does not depend on the selector's seed
    np.testing.assert_array_equal(seeded.fit(images).cv_results_["mean_icr"],
                                  other_seed.fit(images).cv_results_["mean_icr"])
    extractor = FakeExtractor()
    NoiseLevelSelector(extractor, SIGMAS, random_state=0).fit(images)
    assert extractor.random_state is None and extractor.sigma == 1.0  # never modified


def test_best_estimator_and_transform(data):
    images, _ = data
    selector = fit_selector(images)
    steps = selector.best_estimator_.named_steps
    assert list(steps) == ["extract", "decompose"]
    assert steps["extract"].sigma == pytest.approx(selector.best_sigma_)
    out = selector.transform(images[:7])
    assert out.shape[0] == 7 and np.all(np.isfinite(out))
    no_refit = fit_selector(images, refit=False)
    assert not hasattr(no_refit, "best_estimator_")
    with pytest.raises(NotFittedError):
        no_refit.transform(images)
    with pytest.raises(NotFittedError):
        NoiseLevelSelector(FakeExtractor(), SIGMAS).transform(images)


def test_plot(data):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, y = data
    ax = fit_selector(images, y, probe=LogisticRegression(max_iter=500)).plot()
    assert ax.get_xscale() == "log"
    assert len(ax.figure.axes) == 2  # twin axis for the accuracy
    labels = ax.get_legend().get_texts()
    assert any("chosen sigma = 0.1" in text.get_text() for text in labels)
    plt.close(ax.figure)
    ax = fit_selector(images).plot()
    assert len(ax.figure.axes) == 1
    plt.close(ax.figure)


@pytest.mark.parametrize(
    "sigmas, message",
    [
        ([], "empty"),
        ([0.1, 0.0], "positive"),
        ([0.1, -1.0], "positive"),
        ([0.1, np.nan], "finite"),
        ([0.1, 0.1], "repeated"),
        ([[0.1, 0.2]], "1-D"),
        (["a", "b"], "list of numbers"),
    ],
)
def test_bad_sigma_grid(data, sigmas, message):
    images, _ = data
    with pytest.raises(ValueError, match=message):
        NoiseLevelSelector(FakeExtractor(), sigmas).fit(images)


def test_bad_arguments(data):
    images, y = data
    with pytest.raises(ValueError, match="y has 59 labels but there are 60 images"):
        fit_selector(images, y[:-1], probe=LogisticRegression())
    with pytest.raises(ValueError, match='scoring="probe" needs both'):
        fit_selector(images, y, scoring="probe")
    with pytest.raises(ValueError, match='scoring="probe" needs both'):
        fit_selector(images, scoring="probe", probe=LogisticRegression())
    with pytest.raises(ValueError, match="needs held-out images"):
        fit_selector(images, y, probe=LogisticRegression(), cv=1)
    with pytest.raises(InvalidParameterError, match="scoring"):
        fit_selector(images, scoring="accuracy")
    with pytest.raises(InvalidParameterError, match="cv"):
        fit_selector(images, cv=0)
    with pytest.raises(InvalidParameterError, match="extractor"):
        NoiseLevelSelector(object(), SIGMAS).fit(images)
    with pytest.raises(InvalidParameterError, match="sigmas"):
        NoiseLevelSelector(FakeExtractor(), 0.1).fit(images)
    with pytest.raises(InvalidParameterError, match="probe_features"):
        fit_selector(images, y, probe=LogisticRegression(), probe_features="all")
    with pytest.raises(ValueError, match="at least 2 images"):
        fit_selector(images[:1])
    with pytest.raises(ValueError, match="number of splits"):
        fit_selector(images[:4], cv=5)


def test_bad_features_name_the_sigma(data):
    images, _ = data
    selector = NoiseLevelSelector(NaNExtractor(), SIGMAS, random_state=0)
    with pytest.raises(ValueError, match="NaN") as info:
        selector.fit(images)
    assert any("sigma=0.01" in note for note in getattr(info.value, "__notes__", []))


def test_no_warnings_on_the_happy_path(data):
    images, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_selector(images, y, probe=LogisticRegression(max_iter=500))


@pytest.mark.parametrize("cv", [1, 5])
def test_real_backbone_forward_calls_do_not_depend_on_cv(cv):
    torch = pytest.importorskip("torch")
    from skicr import FeatureExtractor
    from skicr.models import SmallUNet

    torch.manual_seed(0)
    net = SmallUNet(channels=(4, 8), mid_channels=8, emb_dim=8, n_frequencies=2)
    calls = []
    net.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    images = np.random.default_rng(0).random((30, 1, 8, 8), dtype=np.float32)
    extractor = FeatureExtractor(net, layer="mid", n_views=2, batch_size=64, random_state=0)
    sigmas = [0.05, 0.2, 1.0]
    NoiseLevelSelector(extractor, sigmas, cv=cv, refit=False, random_state=0).fit(images)
    # per sigma: fit() probes one image, transform_views() runs all 30 x 2 views in one batch
    assert sorted(calls) == sorted([1, 60] * len(sigmas))


# ---------------------------------------------------------------- joint layer x sigma search

LAYER_BEST = {"a": 0.1, "b": np.sqrt(0.1)}  # grid points 2 and 3
LAYER_SCALE = {"a": 0.3, "b": 0.15}  # b is cleaner at its optimum: the joint best is (b, 0.316)
LAYER_WIDTH = {"a": 6, "b": 4}  # layers may differ in width


class FakeLayerExtractor(FakeExtractor):
    """FakeExtractor with layers: each has its own optimum, noise scale and width.

    ``transform_layer_views`` gives, per layer, exactly what ``transform_views``
    gives with ``layer`` set to it; ``n_layer_calls`` counts its calls (one
    "backbone pass" each).
    """

    n_layer_calls = 0

    def __init__(self, sigma=1.0, n_views=3, layer="a", random_state=None):
        super().__init__(sigma=sigma, n_views=n_views, random_state=random_state)
        self.layer = layer

    def _views(self, images, layer):
        if layer not in LAYER_BEST:
            raise ValueError(f"unknown layer {layer!r}")
        width = LAYER_WIDTH[layer]
        images = np.asarray(images, dtype=float).reshape(len(images), -1)
        seed = None if self.random_state is None else [self.random_state, ord(layer)]
        eps = np.random.default_rng(seed).standard_normal((len(images), self.n_views, width))
        best = LAYER_BEST[layer]
        noise_std = LAYER_SCALE[layer] * (self.sigma / best + best / self.sigma)
        return images[:, None, :width] + noise_std * eps

    def transform_views(self, images):
        type(self).n_transform_calls += 1
        return self._views(images, self.layer)

    def transform_layer_views(self, images, layers):
        type(self).n_layer_calls += 1
        return {layer: self._views(images, layer) for layer in layers}


def fit_joint(images, y=None, layers=("a", "b"), **params):
    """A joint search with the joint rule pinned (the best cell over all layers and sigmas;
    the default, ``layer_scoring="auto"``, is tested in test_layer_choice.py)."""
    params.setdefault("random_state", 0)
    params.setdefault("cv", 3)
    params.setdefault("layer_scoring", "joint")
    selector = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layers=list(layers), **params)
    return selector.fit(images, y)


def test_joint_search_results_layout(data):
    images, y = data
    selector = fit_joint(images, y, probe=LogisticRegression(max_iter=500))
    results = selector.cv_results_
    n_rows = 2 * SIGMAS.size
    assert list(results)[:2] == ["layer", "sigma"]
    for key, value in results.items():
        assert isinstance(value, np.ndarray) and value.shape == (n_rows,), key
    assert list(results["layer"]) == ["a"] * SIGMAS.size + ["b"] * SIGMAS.size
    np.testing.assert_allclose(results["sigma"], np.tile(SIGMAS, 2))
    # ranks over all rows; one extraction per sigma shared by both layers
    from scipy.stats import rankdata

    np.testing.assert_array_equal(results["rank_icr"], rankdata(results["mean_icr"], "min"))
    assert results["rank_icr"].max() > SIGMAS.size
    np.testing.assert_array_equal(results["extract_time"][: SIGMAS.size],
                                  results["extract_time"][SIGMAS.size:])
    surface = selector.icr_surface_
    assert isinstance(surface, pd.DataFrame) and surface.shape == (2, SIGMAS.size)
    assert list(surface.index) == ["a", "b"] and surface.index.name == "layer"
    np.testing.assert_allclose(surface.columns, SIGMAS)
    np.testing.assert_array_equal(surface.to_numpy().ravel(), results["mean_icr"])
    np.testing.assert_array_equal(selector.probe_surface_.to_numpy().ravel(),
                                  results["mean_probe_accuracy"])
    # the best cell is the surface's argmin: the known optimum of the cleaner layer
    i, j = np.unravel_index(np.argmin(surface.to_numpy()), surface.shape)
    assert (selector.best_layer_, selector.best_sigma_) == (surface.index[i], surface.columns[j])
    assert selector.best_layer_ == "b" and selector.best_sigma_ == pytest.approx(LAYER_BEST["b"])
    assert selector.best_index_ == SIGMAS.size + 3
    assert selector.best_score_ == pytest.approx(-surface.to_numpy().min())
    # each layer's own optimum along sigma
    assert np.argmin(surface.loc["a"].to_numpy()) == 2


def test_joint_search_equals_single_layer_searches(data):
    images, y = data
    probe = LogisticRegression(max_iter=500)
    joint = fit_joint(images, y, probe=probe, refit=False)
    rows = joint.cv_results_["layer"]
    for layer in ("a", "b"):
        single = NoiseLevelSelector(FakeLayerExtractor(layer=layer), SIGMAS, probe=probe, cv=3,
                                    refit=False, random_state=0).fit(images, y)
        mine = rows == layer
        for key in ("mean_icr", "std_icr", "split0_icr", "split2_icr", "mean_probe_accuracy",
                    "split1_probe_accuracy"):
            np.testing.assert_allclose(joint.cv_results_[key][mine], single.cv_results_[key],
                                       rtol=0, atol=1e-12, err_msg=f"{layer} {key}")


def test_joint_search_one_extraction_per_sigma(data):
    images, _ = data
    FakeLayerExtractor.n_layer_calls = 0
    FakeLayerExtractor.n_transform_calls = 0
    fit_joint(images, refit=False, n_jobs=1)
    assert FakeLayerExtractor.n_layer_calls == SIGMAS.size
    assert FakeLayerExtractor.n_transform_calls == 0


def test_joint_search_refit_and_transform(data):
    images, _ = data
    selector = fit_joint(images)
    extract = selector.best_estimator_.named_steps["extract"]
    assert extract.layer == selector.best_layer_ == "b"
    assert extract.sigma == pytest.approx(selector.best_sigma_)
    out = selector.transform(images[:5])
    assert out.shape[0] == 5 and np.all(np.isfinite(out))


def test_joint_search_scoring_probe_cv1_and_n_jobs(data):
    images, y = data
    probe = LogisticRegression(max_iter=500)
    by_probe = fit_joint(images, y, probe=probe, scoring="probe", refit=False)
    accuracy = by_probe.cv_results_["mean_probe_accuracy"]
    assert by_probe.best_index_ == int(np.argmax(accuracy))
    assert by_probe.best_layer_ == by_probe.cv_results_["layer"][by_probe.best_index_]
    in_sample = fit_joint(images, cv=1, refit=False)
    assert in_sample.n_splits_ == 1 and in_sample.icr_surface_.shape == (2, SIGMAS.size)
    assert not hasattr(in_sample, "probe_surface_")
    with parallel_config(backend="threading", n_jobs=2):
        threaded = fit_joint(images, refit=False)
    np.testing.assert_array_equal(threaded.cv_results_["mean_icr"],
                                  fit_joint(images, refit=False).cv_results_["mean_icr"])
    # one layer given: still the layered layout
    single = fit_joint(images, layers=["a"], refit=False)
    assert single.best_layer_ == "a" and single.icr_surface_.shape == (1, SIGMAS.size)
    # without layers: no layered keys or attributes
    plain = fit_selector(images, refit=False)
    assert "layer" not in plain.cv_results_ and not hasattr(plain, "best_layer_")


@pytest.mark.parametrize(
    "layers, message",
    [
        ([], "empty"),
        (["a", "a"], "repeated"),
        (["a", 3], "strings"),
        (5, "layers"),
    ],
)
def test_joint_search_bad_layers(data, layers, message):
    images, _ = data
    FakeLayerExtractor.n_layer_calls = 0
    with pytest.raises((ValueError, InvalidParameterError), match=message):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layers=layers).fit(images)
    assert FakeLayerExtractor.n_layer_calls == 0  # before the grid


def test_joint_search_needs_a_layered_extractor(data):
    images, _ = data
    with pytest.raises(ValueError, match="transform_layer_views"):
        NoiseLevelSelector(FakeExtractor(), SIGMAS, layers=["a"]).fit(images)
    # an unknown name a generic extractor cannot check early fails in the grid, naming sigma
    with pytest.raises(ValueError, match="unknown layer") as info:
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layers=["a", "c"]).fit(images)
    assert any("sigma=0.01" in note for note in getattr(info.value, "__notes__", []))


def test_plot_icr_surface(data):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skicr.plotting import plot_icr_surface

    images, y = data
    selector = fit_joint(images, y, probe=LogisticRegression(max_iter=500), refit=False)
    ax = selector.plot()
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(text.startswith("lowest ICR: b, sigma = 0.316") for text in labels)
    assert any(text.startswith("best probe accuracy") for text in labels)
    assert len(ax.texts) == 2 * SIGMAS.size  # annotated cells
    plt.close(ax.figure)
    # the accuracy map, from a DataFrame, with a chosen cell that is neither optimum
    frame = pd.DataFrame(selector.cv_results_)
    ax = plot_icr_surface(frame, best_index=0, value="probe_accuracy", annotate=False)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "chosen: a, sigma = 0.01" in labels and not ax.texts
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="'layer'"):
        plot_icr_surface(fit_selector(images, refit=False).cv_results_)
    with pytest.raises(ValueError, match="value must be"):
        plot_icr_surface(frame, value="accuracy")
    with pytest.raises(ValueError, match="several rows"):
        plot_icr_surface(pd.concat([frame, frame]))


def _tiny_unet():
    torch = pytest.importorskip("torch")
    from skicr.models import SmallUNet

    torch.manual_seed(0)
    return SmallUNet(channels=(4, 8), mid_channels=8, emb_dim=8, n_frequencies=2)


def test_real_backbone_joint_search_one_pass_per_sigma_and_equal_to_single_layers():
    from skicr import FeatureExtractor

    net = _tiny_unet()
    calls = []
    net.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    images = np.random.default_rng(0).random((30, 1, 8, 8), dtype=np.float32)
    y = np.arange(30) % 3
    layers = ["down.1", "mid", "up.0"]
    sigmas = [0.05, 0.3]
    probe = LogisticRegression(max_iter=200)
    joint = NoiseLevelSelector(
        FeatureExtractor(net, n_views=2, batch_size=64), sigmas, layers=layers, probe=probe,
        cv=3, refit=False, random_state=0,
    ).fit(images, y)
    # per sigma: fit() probes one image, then ONE pass of all 30 x 2 views reads every layer
    assert sorted(calls) == sorted([1, 60] * len(sigmas))
    assert joint.icr_surface_.shape == (3, 2)
    for layer in layers:
        single = NoiseLevelSelector(
            FeatureExtractor(net, layer=layer, n_views=2, batch_size=64), sigmas, probe=probe,
            cv=3, refit=False, random_state=0,
        ).fit(images, y)
        np.testing.assert_allclose(joint.icr_surface_.loc[layer], single.cv_results_["mean_icr"],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(joint.probe_surface_.loc[layer],
                                   single.cv_results_["mean_probe_accuracy"], rtol=0, atol=1e-12)


def test_real_backbone_unknown_layer_fails_before_any_forward_pass():
    from skicr import FeatureExtractor

    net = _tiny_unet()
    calls = []
    net.register_forward_pre_hook(lambda module, args: calls.append(1))
    images = np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)
    selector = NoiseLevelSelector(FeatureExtractor(net, n_views=2), [0.1, 1.0],
                                  layers=["mid", "midd"])
    with pytest.raises(ValueError, match="Did you mean"):
        selector.fit(images)
    assert calls == []
    # refit at the best (layer, sigma) on a real extractor
    refit = NoiseLevelSelector(FeatureExtractor(net, n_views=2, random_state=0), [0.1, 1.0],
                               layers=["down.1", "mid"], cv=2, random_state=0).fit(images)
    assert refit.best_estimator_.named_steps["extract"].layer_ == refit.best_layer_
    assert refit.transform(images).shape[0] == 10


# ---------------------------------------------------------------- decisions and criteria
def test_interior_optimum_is_an_interior_decision_without_warning(data):
    images, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        selector = fit_selector(images)
    assert selector.decision_ == "interior" and selector.clamped_sigmas_ == {}


@pytest.mark.parametrize("sigmas", [SIGMAS[2:], SIGMAS[:3]])
def test_optimum_at_the_grid_edge_warns_and_says_so(data, sigmas):
    from skicr import NoiseLevelDecisionWarning

    images, _ = data
    selector = NoiseLevelSelector(FakeExtractor(), sigmas, cv=3, random_state=0)
    with pytest.warns(NoiseLevelDecisionWarning, match="end of the grid"):
        selector.fit(images)
    assert selector.decision_ == "grid_edge"
    assert list(selector.cv_results_["decision"]) == ["grid_edge"] * sigmas.size
    assert selector.best_sigma_ == pytest.approx(BEST_SIGMA)


def test_flat_curve_warns(data):
    from skicr import NoiseLevelDecisionWarning

    images, _ = data
    # a designed criterion (the calls come sigma by sigma, fold by fold): its best point is
    # 0.001 better than a neighbour whose paired fold-to-fold spread is 0.01
    pattern = np.array([1.0, -1.0, 0.0])
    table = np.array([0.5, 0.401, 0.4, 0.45, 0.5])[:, None] + np.array(
        [0.0, 0.01, 0.0, 0.0, 0.0])[:, None] * pattern
    values = iter(-table.ravel())
    selector = NoiseLevelSelector(FakeExtractor(), SIGMAS, cv=3, random_state=0,
                                  scoring=lambda train, test: next(values),
                                  selection_rule="best")
    with pytest.warns(NoiseLevelDecisionWarning, match="flat"):
        selector.fit(images)
    assert selector.decision_ == "flat" and selector.best_index_ == 2
    # the default rule (one standard error, smallest sigma) takes the tied lower neighbour;
    # the verdict is judged on the optimum either way
    values = iter(-table.ravel())
    with pytest.warns(NoiseLevelDecisionWarning, match="flat"):
        default = NoiseLevelSelector(FakeExtractor(), SIGMAS, cv=3, random_state=0,
                                     scoring=lambda train, test: next(values)).fit(images)
    assert default.decision_ == "flat" and default.best_index_ == 1


def test_default_is_the_zoo_study_winner(data):
    # docs/noise_level_study.md, round 2: held-out ICR with tau = 1e-2 and the one-SE rule
    from skicr import InvariantResidualDecomposer
    from skicr.model_selection._selector import DEFAULT_DECOMPOSER_TAU
    from skicr.recipes import SCAN_DEFAULTS

    images, _ = data
    assert NoiseLevelSelector(FakeExtractor(), SIGMAS).get_params()["selection_rule"] == (
        "one_se_low")
    assert DEFAULT_DECOMPOSER_TAU == SCAN_DEFAULTS["tau"] == 1e-2
    assert SCAN_DEFAULTS["rule"] == "one_se_low" and SCAN_DEFAULTS["scoring"] == "icr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = fit_selector(images, refit=False)
        explicit = fit_selector(images, refit=False, selection_rule="one_se_low",
                                decomposer=InvariantResidualDecomposer(tau=1e-2))
        previous = fit_selector(images, refit=False, selection_rule="best",
                                decomposer=InvariantResidualDecomposer())
    np.testing.assert_array_equal(default.cv_results_["mean_icr"],
                                  explicit.cv_results_["mean_icr"])
    assert default.best_index_ == explicit.best_index_
    # the previous default's ridge gives other ICR values on the same views and folds
    assert not np.allclose(default.cv_results_["mean_icr"], previous.cv_results_["mean_icr"])


@pytest.mark.parametrize("scoring, lower", [("icr_insample", True), ("lidar", False),
                                            ("rankme", False)])
def test_other_label_free_criteria_choose_from_their_own_column(data, scoring, lower):
    images, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selector = fit_selector(images, scoring=scoring)
        by_icr = fit_selector(images)
    mean = selector.cv_results_[f"mean_{scoring}"]
    assert selector.best_index_ == (int(np.argmin(mean)) if lower else int(np.argmax(mean)))
    assert selector.cv_results_[f"rank_{scoring}"][selector.best_index_] == 1
    # the same folds and views whatever chooses: every column is identical
    for key in ("mean_icr", "mean_lidar", "mean_rankme", "mean_icr_insample"):
        np.testing.assert_array_equal(selector.cv_results_[key], by_icr.cv_results_[key])


def test_callable_scoring_gets_train_and_test_views_and_greater_is_better(data):
    images, _ = data
    calls = []

    def minus_residual(train_views, test_views):
        calls.append((train_views.shape, test_views.shape))
        return -float(np.var(test_views - test_views.mean(axis=1, keepdims=True)))

    selector = fit_selector(images, scoring=minus_residual, cv=3)
    assert len(calls) == 3 * SIGMAS.size
    assert calls[0][0][0] + calls[0][1][0] == len(images)
    assert selector.best_sigma_ == pytest.approx(BEST_SIGMA)  # the least noisy views
    assert selector.cv_results_["rank_score"][selector.best_index_] == 1
    with pytest.raises(ValueError, match="finite"):
        fit_selector(images, scoring=lambda a, b: float("nan"))


def test_selection_rules_pick_within_one_standard_error(data):
    images, _ = data
    sigmas = np.geomspace(0.05, 0.2, 7)  # a shallow valley around the optimum
    fits = {}
    for rule in ("best", "one_se_low", "one_se_high", "knee"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[rule] = NoiseLevelSelector(FakeExtractor(), sigmas, cv=3, random_state=0,
                                            selection_rule=rule).fit(images)
    best = fits["best"].best_index_
    assert fits["one_se_low"].best_index_ <= best <= fits["one_se_high"].best_index_
    assert fits["knee"].best_index_ >= best
    folds = np.column_stack([fits["best"].cv_results_[f"split{k}_icr"] for k in range(3)])
    diff = folds - folds[best]
    se = diff.std(axis=1, ddof=1) / np.sqrt(3)
    for rule in ("one_se_low", "one_se_high"):
        chosen = fits[rule].best_index_
        assert diff[chosen].mean() <= se[chosen] + 1e-12
    with pytest.raises(InvalidParameterError, match="selection_rule"):
        fit_selector(images, selection_rule="median")


def test_vp_grid_points_on_one_timestep_are_scored_once():
    from diffusers import UNet2DModel

    from skicr import FeatureExtractor, NoiseLevelGridWarning

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
                       add_attention=False).eval()
    images = np.random.default_rng(0).uniform(size=(12, 1, 8, 8)).astype(np.float32)
    # DDPM's linear schedule starts at sigma ~0.01: 0.004 and 0.008 both run at timestep 0
    sigmas = [0.004, 0.008, 0.1, 1.0]
    selector = NoiseLevelSelector(FeatureExtractor(unet, n_views=2, random_state=0), sigmas,
                                  cv=2, refit=False, random_state=0)
    with pytest.warns(NoiseLevelGridWarning, match="same timestep") as record:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("always", NoiseLevelGridWarning)
            selector.fit(images)
    assert sum(issubclass(w.category, NoiseLevelGridWarning) for w in record) == 1
    assert selector.clamped_sigmas_ == {0.004: 0.008}
    np.testing.assert_allclose(selector.cv_results_["sigma"], [0.008, 0.1, 1.0])
