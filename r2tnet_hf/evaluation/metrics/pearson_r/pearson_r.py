"""Pearson correlation between predictions and references (a local `evaluate` module of r2tnet_hf)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Pearson r between predicted and true values of a continuous target (e.g. age, cognition)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted values.
    references (`list[float]`): true values. Pairs where either is NaN are left out.
Returns:
    pearson_r (`float`): in [-1, 1]; NaN when fewer than 2 pairs remain or one side is constant.
"""


class PearsonR(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        x, y = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        if keep.sum() < 2:
            return {"pearson_r": float("nan")}
        x, y = x[keep] - x[keep].mean(), y[keep] - y[keep].mean()
        denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
        if denominator == 0:
            return {"pearson_r": float("nan")}
        return {"pearson_r": float(np.clip(np.sum(x * y) / denominator, -1.0, 1.0))}
