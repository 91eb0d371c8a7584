"""Area under the ROC curve (a local `evaluate` module of r2tnet_hf).

Binary: `prediction_scores` are the scores of the positive class (label 1). Multi-class: `prediction_scores` are
rows of per-class scores (probabilities or logits), and the result is the one-vs-rest macro average over the classes
present in the references that have both positives and negatives. Computed as the Mann-Whitney U statistic with
mid-ranks for ties, which equals the trapezoidal area under the ROC curve.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import rankdata

from r2tnet_hf.evaluation.metric_support import metric_info

_DESCRIPTION = "ROC AUC: binary, or one-vs-rest macro average for multi-class scores."
_KWARGS_DESCRIPTION = """
Args:
    prediction_scores (`list[float]` or `list[list[float]]`): positive-class scores, or one row of class scores each.
    references (`list[int]`): true labels (0/1 for binary; class indices for multi-class).
Returns:
    auroc (`float`): in [0, 1]; NaN when no class has both positives and negatives.
"""


def binary_auroc(scores, positives):
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    n_positive, n_negative = positives.sum(), (~positives).sum()
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


class Auroc(evaluate.Metric):
    def _info(self):
        score, label = datasets.Value("float64"), datasets.Value("int64")
        binary = {"prediction_scores": score, "references": label}
        multi_class = {"prediction_scores": datasets.Sequence(score), "references": label}
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, [binary, multi_class])

    def _compute(self, prediction_scores, references):
        scores, references = np.asarray(prediction_scores, dtype=np.float64), np.asarray(references)
        if scores.ndim == 1:
            return {"auroc": binary_auroc(scores, references == 1)}
        areas = [binary_auroc(scores[:, label], references == label) for label in np.unique(references)]
        areas = [area for area in areas if np.isfinite(area)]
        return {"auroc": float(np.mean(areas)) if areas else float("nan")}
