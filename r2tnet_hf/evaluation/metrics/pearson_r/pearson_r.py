"""Pearson correlation between predictions and references (a local `evaluate` module of r2tnet_hf)."""

import evaluate
import numpy as np

from r2tnet_hf.evaluation.metric_support import finite_pairs, float_pairs_info


class PearsonR(evaluate.Metric):
    def _info(self):
        return float_pairs_info(
            "Pearson r between predicted and true values of a continuous target (e.g. age, cognition).",
            returns="pearson_r (`float`): in [-1, 1]; NaN when fewer than 2 pairs remain or one side is constant.",
        )

    def _compute(self, predictions, references):
        x, y = finite_pairs(predictions, references)
        if len(x) < 2:
            return {"pearson_r": float("nan")}
        x, y = x - x.mean(), y - y.mean()
        denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
        if denominator == 0:
            return {"pearson_r": float("nan")}
        return {"pearson_r": float(np.clip(np.sum(x * y) / denominator, -1.0, 1.0))}
