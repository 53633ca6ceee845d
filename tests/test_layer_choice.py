"""Choosing the layer (issue 12): the criteria comparable across layers, the per-layer
procedure, the few-labels mode and the LayerChoiceWarning, against ground truth."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from skicr import LayerChoiceWarning, NoiseLevelSelector
from skicr.metrics import (
    accumulate,
    decompose,
    effective_rank,
    heldout_icr,
    heldout_spectrum,
    icr_from_eigenvalues,
    invariant_dimensions,
    invariant_effective_rank,
)
from skicr.model_selection import (
    LAYER_SEARCH_DEFAULTS,
    LAYER_STUDY,
    few_label_accuracy,
    few_label_splits,
    layer_choice_report,
    select_from_results,
)

from test_model_selection import SIGMAS, FakeLayerExtractor, make_images


def selector_seeds(random_state=0):
    """(fold seed, feature seed, few-labels draw seed): the selector's draws from random_state."""
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    top = np.iinfo(np.int32).max
    return int(rng.randint(top)), int(rng.randint(top)), int(rng.randint(top))


def selector_folds(n_images, cv=3, random_state=0):
    from sklearn.model_selection import KFold

    folds = KFold(cv, shuffle=True, random_state=selector_seeds(random_state)[0])
    return list(folds.split(np.zeros((n_images, 1))))


def grouped(n_images=300, d=6, n_views=4, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_images, 1, d)) + noise * rng.normal(size=(n_images, n_views, d))


# ----------------------------------------------------------------- metrics
def test_heldout_spectrum_gives_back_the_eigenvalues_and_the_heldout_icr():
    views = grouped()
    fitted = decompose(accumulate(views))
    # on the training views, along all their Fisher directions: their own eigenvalues
    np.testing.assert_allclose(heldout_spectrum(fitted.directions, views), fitted.eigenvalues,
                               rtol=1e-9)
    test = grouped(seed=1)
    snr = heldout_spectrum(fitted.directions, test)
    assert icr_from_eigenvalues(snr) == pytest.approx(heldout_icr(fitted.directions, test),
                                                      rel=1e-12)
    # the top-k subset is the first k values, whatever the length of the directions
    np.testing.assert_allclose(heldout_spectrum(7.0 * fitted.directions[:2], test), snr[:2],
                               rtol=1e-10)


def test_heldout_spectrum_ground_truth_snr_and_bias_correction():
    # one direction of pure content (SNR = 1 / 0.5**2 = 4 in population), one of pure noise
    rng = np.random.default_rng(0)
    n, n_views = 4000, 4
    content = np.concatenate([rng.normal(size=(n, 1, 1)), np.zeros((n, 1, 1))], axis=2)
    views = content + 0.5 * rng.normal(size=(n, n_views, 2))
    axes = np.eye(2)
    plain = heldout_spectrum(axes, views, tau=0.0)
    corrected = heldout_spectrum(axes, views, tau=0.0, bias_correction=True)
    # plug-in Sigma_s = cov(m) carries Sigma_xi / V: +1/V on every direction
    assert plain[0] == pytest.approx(4.0 + 1 / n_views, rel=0.06)
    assert plain[1] == pytest.approx(1 / n_views, rel=0.1)
    assert corrected[0] == pytest.approx(4.0, rel=0.06)
    assert corrected[1] == pytest.approx(0.0, abs=0.02)
    with pytest.raises(ValueError, match="directions"):
        heldout_spectrum(np.eye(3), views)


def test_invariant_dimensions_counts_invariant_shares():
    assert invariant_dimensions([1.0, 1.0, 0.0]) == pytest.approx(1.0)
    assert invariant_dimensions([3.0]) == pytest.approx(0.75)
    assert invariant_dimensions(np.full(10, 1e12)) == pytest.approx(10.0)
    for bad in ([], [-1.0], [np.nan]):
        with pytest.raises(ValueError, match="non-negative"):
            invariant_dimensions(bad)


def test_invariant_effective_rank_against_the_covariance_of_the_means():
    rng = np.random.default_rng(0)
    content = rng.normal(size=(800, 1, 3)) * np.array([1.0, 1.0, 1.0])
    views = np.concatenate([content, np.zeros((800, 1, 3))], axis=2)
    views = views + 0.01 * rng.normal(size=(800, 4, 6))
    assert invariant_effective_rank(views) == pytest.approx(3.0, abs=0.1)
    # the definition: effective rank of the eigenvalues of cov(mean over views)
    views = grouped(d=5)
    means = views.mean(axis=1)
    expected = effective_rank(np.clip(np.linalg.eigvalsh(np.cov(means.T)), 0, None))
    assert invariant_effective_rank(views) == pytest.approx(expected, rel=1e-8)
    # flattened input with n_views
    assert invariant_effective_rank(views.reshape(len(views), -1), n_views=4) == pytest.approx(
        expected, rel=1e-8)
    with pytest.raises(ValueError, match="same mean"):
        invariant_effective_rank(np.ones((10, 3, 2)))


# ----------------------------------------------------------------- the fold criteria
def _layer_fit(n_features=24, **params):
    images, y = make_images(n_images=60, n_pixels=n_features)
    params.setdefault("random_state", 0)
    params.setdefault("cv", 3)
    params.setdefault("refit", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layers=["a", "b"],
                                  **params).fit(images, y), images, y


def test_layer_criteria_in_a_joint_search_equal_their_definitions():
    from skicr import InvariantResidualDecomposer

    # the hand computations below use decompose()'s ridge, tau = 1e-3 (the selector's
    # default decomposer has tau = 1e-2 since the zoo study's round 2)
    selector, images, _ = _layer_fit(decomposer=InvariantResidualDecomposer())
    results = selector.cv_results_
    for name in ("icr_top", "icr_pca", "invariant_rank", "invariant_dims"):
        assert f"split2_{name}" in results and np.all(np.isfinite(results[f"mean_{name}"]))
    # recompute one cell and fold by hand: layer a (width 6), grid point 1, the first fold
    extractor = FakeLayerExtractor(sigma=SIGMAS[1], random_state=selector_seeds()[1])
    views = extractor.transform_layer_views(images, ["a"])["a"]
    train, test = selector_folds(len(images))[0]
    directions = decompose(accumulate(views[train])).directions
    width = 4  # common width below the layer's 6
    selector4, _, _ = _layer_fit(common_width=width, decomposer=InvariantResidualDecomposer())
    row = 1
    top = heldout_spectrum(directions[:width], views[test])
    assert selector4.cv_results_["split0_icr_top"][row] == pytest.approx(1 / (1 + top.mean()),
                                                                         rel=1e-8)
    pca = PCA(width, svd_solver="full").fit(views[train].reshape(-1, 6))
    low = pca.transform(views.reshape(-1, 6)).reshape(len(views), views.shape[1], width)
    expected = heldout_icr(decompose(accumulate(low[train])).directions, low[test])
    assert selector4.cv_results_["split0_icr_pca"][row] == pytest.approx(expected, rel=1e-8)
    dims = invariant_dimensions(heldout_spectrum(directions, views[test], bias_correction=True))
    assert selector4.cv_results_["split0_invariant_dims"][row] == pytest.approx(dims, rel=1e-8)
    assert selector4.cv_results_["split0_invariant_rank"][row] == pytest.approx(
        invariant_effective_rank(views[test]), rel=1e-8)
    # at a common width >= every layer's, icr_top and icr_pca are the held-out ICR
    np.testing.assert_allclose(results["mean_icr_top"], results["mean_icr"], rtol=1e-8)
    np.testing.assert_allclose(results["mean_icr_pca"], results["mean_icr"], rtol=1e-8)


def test_a_single_layer_search_leaves_the_layer_criteria_out_unless_named():
    images, y = make_images()
    from test_model_selection import FakeExtractor

    plain = NoiseLevelSelector(FakeExtractor(), SIGMAS, cv=3, random_state=0,
                               refit=False).fit(images)
    assert "mean_icr_top" not in plain.cv_results_
    named = NoiseLevelSelector(FakeExtractor(), SIGMAS, scoring="invariant_dims", cv=3,
                               random_state=0, refit=False).fit(images)
    assert "mean_invariant_dims" in named.cv_results_
    assert named.best_index_ == int(np.argmax(named.cv_results_["mean_invariant_dims"]))


# ----------------------------------------------------------------- the procedures
def _results(icr, dims, layers=("a", "b")):
    """cv_results with two folds per cell, layer-major."""
    icr, dims = np.asarray(icr, float), np.asarray(dims, float)
    n_sigmas = icr.shape[0] // len(layers)
    out = {"layer": np.repeat(np.array(layers, dtype=object), n_sigmas),
           "sigma": np.tile(np.geomspace(0.01, 1, n_sigmas), len(layers))}
    for k, delta in enumerate((-0.001, 0.001)):
        out[f"split{k}_icr"] = icr + delta
        out[f"split{k}_invariant_dims"] = dims + 10 * delta
    return out


def test_select_from_results_joint_and_per_layer():
    # layer a: ICR lowest overall at its first sigma; layer b: more invariant dimensions
    results = _results(icr=[0.20, 0.30, 0.40, 0.50, 0.35, 0.45],
                       dims=[2.0, 1.0, 1.0, 5.0, 9.0, 6.0])
    for joint in ("joint", None):
        assert select_from_results(results, selection_rule="best",
                                   layer_scoring=joint) == (0, "grid_edge")
    # per layer: sigma by the ICR (a -> 0, b -> 4), then the layers by invariant_dims at them
    index, decision = select_from_results(results, selection_rule="best",
                                          layer_scoring="invariant_dims")
    assert index == 4 and decision == "interior"
    # joint by invariant_dims (higher is better): the best cell overall
    assert select_from_results(results, scoring="invariant_dims", layer_scoring="joint")[0] == 4
    with pytest.raises(ValueError, match="not measured"):
        select_from_results(results, layer_scoring="lidar")
    with pytest.raises(ValueError, match="selection_rule"):
        select_from_results(results, selection_rule="middle")


def test_per_layer_one_se_low_runs_within_every_layer():
    # layer b: a flat bottom; one_se_low takes its smallest sigma within the paired SE
    results = _results(icr=[0.20, 0.30, 0.40, 0.30, 0.30, 0.45],
                       dims=[1.0, 1.0, 1.0, 9.0, 9.0, 9.0])
    results["split0_icr"][3:5] = [0.301, 0.299]
    results["split1_icr"][3:5] = [0.299, 0.301]
    assert select_from_results(results, selection_rule="best",
                               layer_scoring="invariant_dims")[0] in (3, 4)
    assert select_from_results(results, selection_rule="one_se_low",
                               layer_scoring="invariant_dims")[0] == 3


def test_auto_is_the_layer_study_procedure_and_joint_the_old_rule():
    # layer a: the lowest ICR overall; layer b: the lower icr_top at its own sigma
    results = _results(icr=[0.20, 0.30, 0.40, 0.50, 0.35, 0.45],
                       dims=[2.0, 1.0, 1.0, 5.0, 9.0, 6.0])
    for k, delta in enumerate((-0.001, 0.001)):
        results[f"split{k}_icr_top"] = np.array([0.6, 0.6, 0.6, 0.3, 0.2, 0.3]) + delta
    assert LAYER_SEARCH_DEFAULTS == {"scoring": "icr", "selection_rule": "one_se_low",
                                     "layer_scoring": "icr_top"}
    # the defaults of select_from_results are the selector's: "auto" -> icr_top per layer
    assert select_from_results(results)[0] == 4
    assert select_from_results(results) == select_from_results(results, **LAYER_SEARCH_DEFAULTS)
    assert select_from_results(results, layer_scoring="joint")[0] == 0
    # without layers "auto" means one curve: the rule on it
    flat = {key: value[:3] for key, value in results.items() if key != "layer"}
    assert select_from_results(flat)[0] == select_from_results(flat, layer_scoring="joint")[0] == 0


def test_selector_default_is_auto_resolved_to_the_layer_study_procedure():
    images, y = make_images()
    base = dict(layers=["a", "b"], cv=3, random_state=0, refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, **base).fit(images)
        study = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, **base,
                                   **LAYER_SEARCH_DEFAULTS).fit(images)
        joint = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layer_scoring="joint",
                                   **base).fit(images)
        old = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layer_scoring=None,
                                 **base).fit(images)
    assert default.layer_scoring == "auto" and default.layer_scoring_ == "icr_top"
    assert default.best_index_ == study.best_index_
    assert default.best_index_ == select_from_results(default.cv_results_)[0]
    assert default.decision_ == study.decision_ and default.layer_choice_ == study.layer_choice_
    assert default.layer_choice_["study_procedure"] is True
    assert default.layer_choice_["by"] == "icr_top"
    # "joint" (None: the same) is the best ICR cell over all layers and sigmas
    assert joint.layer_scoring_ == old.layer_scoring_ == "joint"
    assert joint.best_index_ == old.best_index_
    assert joint.best_index_ == select_from_results(joint.cv_results_, layer_scoring="joint")[0]
    best_cell = int(np.argmin(joint.cv_results_["mean_icr"]))
    assert joint.cv_results_["layer"][joint.best_index_] == joint.cv_results_["layer"][best_cell]
    assert joint.layer_choice_["by"] == "icr" and joint.layer_choice_["study_procedure"] is False
    assert "over all layers and sigmas" in joint.layer_choice_["procedure"]
    # scoring="probe": "auto" is the probe's best cell over all of them (one scale)
    probe = LogisticRegression(max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_probe = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, scoring="probe", probe=probe,
                                      **base).fit(images, y)
    assert by_probe.layer_scoring_ == "joint"
    assert by_probe.best_index_ == int(np.argmax(by_probe.cv_results_["mean_probe_accuracy"]))
    # without layers: nothing to resolve, and "auto" needs no layers
    plain = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, cv=3, random_state=0,
                               refit=False).fit(images)
    assert plain.layer_scoring_ is None and not hasattr(plain, "layer_choice_")
    with pytest.raises(ValueError, match="give layers"):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layer_scoring="joint").fit(images)


def test_selector_layer_scoring_is_the_function_of_its_results():
    selector, _, _ = _layer_fit(layer_scoring="invariant_rank", selection_rule="one_se_low")
    expected, decision = select_from_results(selector.cv_results_, "icr", "one_se_low",
                                             "invariant_rank")
    assert selector.best_index_ == expected and selector.decision_ == decision
    assert selector.best_layer_ == selector.cv_results_["layer"][expected]
    assert selector.label_free_choice_ == {"sigma": True, "layer": True}


# ----------------------------------------------------------------- few labels
def test_few_label_splits_draw_k_per_class_and_hold_one_out():
    y = np.repeat(np.arange(4), 12)
    y[::7] = -1  # unlabelled images are never drawn
    for k in (2, 3, 5, 8):
        splits = few_label_splits(y, k, random_state=0)
        assert len(splits) == min(k, 5)
        drawn = np.unique(np.concatenate([np.concatenate(s) for s in splits]))
        assert np.all(y[drawn] >= 0)
        assert np.array_equal(np.bincount(y[drawn]), np.full(4, k))
        tests = np.concatenate([test for _, test in splits])
        assert np.array_equal(np.sort(tests), drawn)          # each drawn image tested once
        for train, test in splits:
            assert not set(train) & set(test)
            assert np.array_equal(np.sort(np.concatenate([train, test])), drawn)
            assert set(y[train]) == set(range(4))
    # k = 1: one split, tested on its own images
    (train, test), = few_label_splits(y, 1, random_state=0)
    assert np.array_equal(train, test) and np.array_equal(np.sort(y[train]), np.arange(4))
    # seeded
    a, b = few_label_splits(y, 3, random_state=1), few_label_splits(y, 3, random_state=1)
    assert all(np.array_equal(p[0], q[0]) for p, q in zip(a, b))
    with pytest.raises(ValueError, match="fewer labelled"):
        few_label_splits(y, 11)
    with pytest.raises(ValueError, match="2 classes"):
        few_label_splits(np.zeros(10, int), 2)
    with pytest.raises(ValueError, match="int >= 1"):
        few_label_splits(y, 0)


def test_few_label_accuracy_is_the_hand_computation():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    views = rng.normal(size=(90, 3, 5)) + y[:, None, None] * np.array([1.0, 0, 0, 0, 0])
    probe = LogisticRegression(max_iter=500)
    splits = few_label_splits(y, 4, random_state=0)
    expected = []
    for train, test in splits:
        fitted = clone(probe).fit(views[train, 1:].reshape(-1, 5), np.repeat(y[train], 2))
        expected.append(float(np.mean(fitted.predict(views[test, 0]) == y[test])))
    assert few_label_accuracy(views, y, probe, splits) == expected
    means = few_label_accuracy(views, y, probe, splits, probe_features="view_mean")
    fitted = clone(probe).fit(views[splits[0][0]].mean(axis=1), y[splits[0][0]])
    assert means[0] == np.mean(fitted.predict(views[splits[0][1]].mean(axis=1)) == y[splits[0][1]])
    with pytest.raises(ValueError, match="n_views >= 2"):
        few_label_accuracy(views[:, :1], y, probe, splits)


def test_selector_few_labels_mode_uses_only_the_drawn_labels():
    probe = LogisticRegression(max_iter=500)
    selector, images, y = _layer_fit(probe=probe, layer_scoring="probe", n_labels_per_class=3)
    assert selector.label_free_choice_ == {"sigma": True, "layer": False}
    results = selector.cv_results_
    assert "split2_probe_accuracy" in results and "split3_probe_accuracy" not in results
    splits = few_label_splits(y, 3, random_state=selector_seeds()[2])
    # the ICR columns do not depend on the labels or the few-labels mode
    plain, _, _ = _layer_fit()
    np.testing.assert_array_equal(plain.cv_results_["mean_icr"], results["mean_icr"])
    # unlabelled images (-1) are never drawn; a run with most labels hidden works
    hidden = y.copy()
    hidden[np.arange(len(y)) % 4 != 0] = -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layers=["a", "b"],
                                    probe=probe, layer_scoring="probe", n_labels_per_class=2,
                                    cv=3, refit=False, random_state=0).fit(images, hidden)
    assert np.all(np.isfinite(sparse.cv_results_["mean_probe_accuracy"]))
    # a cell's accuracy is few_label_accuracy on that cell's views
    extractor = FakeLayerExtractor(sigma=SIGMAS[2], random_state=selector_seeds()[1])
    views = extractor.transform_layer_views(images, ["b"])["b"]
    row = SIGMAS.size + 2
    assert results["mean_probe_accuracy"][row] == pytest.approx(
        np.mean(few_label_accuracy(views, y, probe, splits)))
    # the layer: the best k-labels accuracy among each layer's ICR-chosen sigma
    expected, _ = select_from_results(results, "icr", "best", "probe")
    assert selector.best_index_ == expected


def test_layer_choice_warning_only_when_the_layer_is_label_free():
    images, y = make_images()
    base = dict(layers=["a", "b"], cv=3, random_state=0, refit=False)
    with pytest.warns(LayerChoiceWarning, match="without labels") as record:
        free = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, **base).fit(images)
    message = str(record[0].message)
    assert message == free.layer_choice_["message"]
    assert "the layer study's procedure" in message and "icr_top" in message
    assert LAYER_STUDY["document"] in message and "n_labels_per_class" in message
    assert LAYER_STUDY["label_free"] in message
    probe = LogisticRegression(max_iter=500)
    for params in (dict(scoring="probe"), dict(layer_scoring="probe"),
                   dict(layer_scoring="probe", n_labels_per_class=2)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", LayerChoiceWarning)
            warnings.simplefilter("ignore", UserWarning)
            selector = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, probe=probe, **base,
                                          **params).fit(images, y)
        assert selector.label_free_choice_["layer"] is False
    # one candidate layer: nothing was chosen among layers
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerChoiceWarning)
        warnings.simplefilter("ignore", UserWarning)
        one = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS,
                                 **{**base, "layers": ["a"]}).fit(images)
    assert one.layer_choice_["settled"] is True and "only candidate" in one.layer_choice_["message"]


def test_bad_layer_choice_parameters():
    images, y = make_images()
    probe = LogisticRegression(max_iter=500)
    with pytest.raises(ValueError, match="give layers"):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layer_scoring="icr").fit(images)
    with pytest.raises(InvalidParameterError, match="layer_scoring"):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layers=["a"],
                           layer_scoring="accuracy").fit(images)
    with pytest.raises(InvalidParameterError, match="n_labels_per_class"):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, n_labels_per_class=0).fit(images)
    with pytest.raises(ValueError, match="needs a probe"):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, n_labels_per_class=2).fit(images, y)
    with pytest.raises(ValueError, match="probe and labels"):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, layers=["a", "b"],
                           layer_scoring="probe", probe=probe).fit(images)
    unlabelled = y.copy()
    unlabelled[:5] = -1
    with pytest.raises(ValueError, match="unlabelled"):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, probe=probe).fit(images, unlabelled)
    with pytest.raises(ValueError, match="view_mean"):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, probe=probe, n_labels_per_class=1,
                           probe_features="view_mean").fit(images, y)
    with pytest.raises(ValueError, match="fewer labelled"):
        NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, probe=probe,
                           n_labels_per_class=50).fit(images, y)


def test_layer_choice_report_says_what_was_label_free():
    from skicr.cli._scan import layer_choice_sentence

    images, y = make_images()
    base = dict(layers=["a", "b"], cv=3, random_state=0, refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, **base).fit(images)
        few = NoiseLevelSelector(FakeLayerExtractor(), SIGMAS, probe=LogisticRegression(),
                                 layer_scoring="probe", n_labels_per_class=2, **base).fit(images, y)
    report = free.layer_choice_
    assert report == layer_choice_report(
        free.best_layer_, scoring="icr", selection_rule="one_se_low", layer_scoring="icr_top",
        label_free_choice={"sigma": True, "layer": True}, n_labels_per_class=None)
    assert report["label_free"] is True and report["settled"] is False
    assert report["by"] == "icr_top" and report["study"] == LAYER_STUDY
    assert report["study"] is not LAYER_STUDY  # a copy: the constant cannot be edited through it
    assert "guess" in report["message"] and LAYER_STUDY["label_free"] in report["message"]
    # the command prints the library's message as it is, and the options that check it
    sentence = layer_choice_sentence(free)
    assert sentence.startswith("Warning: ") and report["message"] in sentence
    assert "--layer-scoring probe --labels-per-class 5" in sentence
    report = few.layer_choice_
    assert report["label_free"] is False and report["sigma_label_free"] is True
    assert report["n_labels_per_class"] == 2 and report["settled"] is True
    assert "2 labelled images per class" in report["message"]
    assert "without labels" in report["message"]  # the sigma part
    assert layer_choice_sentence(few) == f"Note: {report['message']}"


def test_plot_icr_surface_draws_any_criterion():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skicr.plotting import plot_icr_surface

    selector, _, _ = _layer_fit(layer_scoring="invariant_dims")
    results = selector.cv_results_
    for value, cmap, label in (("invariant_dims", "viridis", "invariant_dims (higher is better)"),
                               ("icr_insample", "viridis_r", "icr_insample (lower is better)")):
        ax = plot_icr_surface(results, best_index=selector.best_index_, value=value)
        mesh = ax.collections[0]
        assert mesh.get_cmap().name == cmap
        np.testing.assert_allclose(np.asarray(mesh.get_array()).ravel(), results[f"mean_{value}"])
        assert ax.figure.axes[-1].get_ylabel() == label
        plt.close(ax.figure)
    with pytest.raises(ValueError, match="mean_<value>"):
        plot_icr_surface(results, value="lidar_flatten")
