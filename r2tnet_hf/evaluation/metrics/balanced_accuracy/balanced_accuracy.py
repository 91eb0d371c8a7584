"""Balanced accuracy (a local `evaluate` module of r2tnet_hf).

Really balanced: the mean over classes of per-class recall, over the classes present in the references. (The
R2T-Net seed code reported plain accuracy under this name; on an imbalanced cohort, e.g. ABIDE or ADHD200, the two
differ, and a classifier that always answers the majority class scores 1/num_classes here.)
"""

import datasets
import evaluate
import numpy as np

from r2tnet_hf.evaluation.metric_support import metric_info

_DESCRIPTION = "Mean per-class recall over the classes present in the references (chance = 1 / number of classes)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class indices.
    references (`list[int]`): true class indices.
Returns:
    balanced_accuracy (`float`): in [0, 1]. Predicted classes absent from the references count only as errors.
"""


class BalancedAccuracy(evaluate.Metric):
    def _info(self):
        label = datasets.Value("int64")
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, {"predictions": label, "references": label})

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if len(references) == 0:
            return {"balanced_accuracy": float("nan")}
        recalls = [np.mean(predictions[references == label] == label) for label in np.unique(references)]
        return {"balanced_accuracy": float(np.mean(recalls))}
