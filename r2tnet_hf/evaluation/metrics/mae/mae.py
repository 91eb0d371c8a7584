"""Mean absolute error between predictions and references (a local `evaluate` module of r2tnet_hf)."""

import evaluate
import numpy as np

from r2tnet_hf.evaluation.metric_support import finite_pairs, float_pairs_info


class MeanAbsoluteError(evaluate.Metric):
    def _info(self):
        return float_pairs_info(
            "Mean absolute error of a continuous target; lower is better.",
            returns="mae (`float`): NaN when no pair remains.",
        )

    def _compute(self, predictions, references):
        x, y = finite_pairs(predictions, references)
        return {"mae": float(np.mean(np.abs(x - y))) if len(x) else float("nan")}
