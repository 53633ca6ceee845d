"""Choose the noise level of feature extraction without labels.

:class:`NoiseLevelSelector` scans a grid of noise levels sigma. At each sigma
the backbone runs once over all images (through a clone of the feature
extractor); cross-validation folds over images then reuse those features to
measure the held-out Invariant Contamination Ratio (ICR), and, when labels and
a probe are given, the held-out probe accuracy for comparison. The chosen
sigma minimises the mean held-out ICR: no label is needed for the choice.

With ``layers``, the search is joint over (layer, sigma): one backbone pass
per sigma reads every candidate layer at once, and each layer is scored on
its own features. The default procedure of that search, the layer study's
(:data:`LAYER_SEARCH_DEFAULTS`), and what the study measured for it
(:data:`LAYER_STUDY`) have their one home here; ``skicr scan --layers``
imports them.

The selector runs check -> candidates -> evaluate (one task per sigma) ->
format results -> select -> refit: ``_checks`` (inputs, folds, the shared
backbone), ``_evaluate`` (one task: one backbone pass, every fold),
``_results`` (``cv_results_`` with GridSearchCV's ``params`` / ``param_*``
keys, the choice, the surfaces), ``_decision`` (the verdict on a criterion's
curve, the selection rules, the two warnings), ``_selector`` (the estimator).

:class:`StreamingNoiseLevelSelector` (``_streaming``) runs the same scan over
a dataset streamed once per sigma, from per-fold mergeable statistics, on one
or many processes, with checkpoints.
"""

from ._checks import few_label_accuracy, few_label_splits
from ._decision import (
    LAYER_SEARCH_DEFAULTS,
    LAYER_STUDY,
    LayerChoiceWarning,
    NoiseLevelDecisionWarning,
    NoiseLevelGridWarning,
    layer_choice_report,
)
from ._results import select_from_results
from ._selector import NoiseLevelSelector
from ._streaming import StreamingNoiseLevelSelector

__all__ = [
    "NoiseLevelSelector",
    "StreamingNoiseLevelSelector",
    "LayerChoiceWarning",
    "NoiseLevelDecisionWarning",
    "NoiseLevelGridWarning",
    "LAYER_SEARCH_DEFAULTS",
    "LAYER_STUDY",
    "few_label_accuracy",
    "few_label_splits",
    "layer_choice_report",
    "select_from_results",
]
