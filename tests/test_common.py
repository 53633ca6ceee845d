"""sklearn's estimator checks over every skicr estimator (as imbalanced-learn does).

The decomposer reads flattened views ``(n_images, n_views * d)``, so a check
whose data has a number of columns not divisible by ``n_views`` must fail
with our divisibility error. Each check's data has a fixed width (2, 3, 4, 5,
10 columns ...): running the decomposer with ``n_views`` 2, 3 and 5 puts every
check through at least one instance whose ``n_views`` divides its data.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skicr import InvariantResidualDecomposer

_WIDTH_NOT_DIVISIBLE = "the check's data width is not divisible by n_views"

# checks whose fixed data width does not divide by n_views (measured, sklearn 1.9)
_NOT_DIVISIBLE = {
    2: [
        "check_fit_score_takes_y", "check_dont_overwrite_parameters", "check_estimators_dtypes",
        "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array",
        "check_transformer_general", "check_transformer_preserve_dtypes",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_dict_unchanged", "check_fit2d_predict1d",
    ],
    3: [
        "check_estimators_overwrite_params", "check_estimators_fit_returns_self",
        "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
        "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in",
    ],
    5: [
        "check_fit_score_takes_y", "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
        "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_pipeline_consistency",
        "check_estimators_nan_inf", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array",
        "check_transformer_general", "check_transformer_preserve_dtypes",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
        "check_n_features_in", "check_fit2d_predict1d",
    ],
}


def _expected_failed_checks(estimator):
    return {name: _WIDTH_NOT_DIVISIBLE for name in _NOT_DIVISIBLE[estimator.n_views]}


def test_every_check_passes_for_some_n_views():
    always_failing = set.intersection(*(set(names) for names in _NOT_DIVISIBLE.values()))
    assert always_failing == set()


@parametrize_with_checks(
    [InvariantResidualDecomposer(n_views=v) for v in sorted(_NOT_DIVISIBLE)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
