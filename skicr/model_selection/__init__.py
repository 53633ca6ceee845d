"""Choose the noise level of feature extraction without labels.

:class:`NoiseLevelSelector` scans a grid of noise levels sigma. At each sigma
the backbone runs once over all images (through a clone of the feature
extractor); cross-validation folds over images then reuse those features to
measure the held-out Invariant Contamination Ratio (ICR), and, when labels and
a probe are given, the held-out probe accuracy for comparison. The chosen
sigma minimises the mean held-out ICR: no label is needed for the choice.

With ``layers``, the search is joint over (layer, sigma): one backbone pass
per sigma reads every candidate layer at once, and each layer is scored on
its own features.

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
from ._decision import LayerChoiceWarning, NoiseLevelDecisionWarning, NoiseLevelGridWarning
from ._results import select_from_results
from ._selector import NoiseLevelSelector
from ._streaming import StreamingNoiseLevelSelector

__all__ = [
    "NoiseLevelSelector",
    "StreamingNoiseLevelSelector",
    "LayerChoiceWarning",
    "NoiseLevelDecisionWarning",
    "NoiseLevelGridWarning",
    "few_label_accuracy",
    "few_label_splits",
    "select_from_results",
]
