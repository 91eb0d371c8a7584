"""Mean absolute error between predictions and references (a local `evaluate` module of r2tnet_hf)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Mean absolute error of a continuous target; lower is better."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted values.
    references (`list[float]`): true values. Pairs where either is NaN (a missing phenotype) are left out.
Returns:
    mae (`float`): NaN when no pair remains.
"""


class MeanAbsoluteError(evaluate.Metric):
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
        x, y = x[keep], y[keep]
        if len(x) == 0:
            return {"mae": float("nan")}
        return {"mae": float(np.mean(np.abs(x - y)))}
