"""Mean squared error between predictions and references (a local `evaluate` module of r2tnet_hf)."""

import evaluate
import numpy as np

from r2tnet_hf.evaluation.metric_support import finite_pairs, float_pairs_info


class MeanSquaredError(evaluate.Metric):
    def _info(self):
        return float_pairs_info(
            "Mean squared error of a continuous target; lower is better.",
            returns="mse (`float`): NaN when no pair remains.",
        )

    def _compute(self, predictions, references):
        x, y = finite_pairs(predictions, references)
        return {"mse": float(np.mean((x - y) ** 2)) if len(x) else float("nan")}
