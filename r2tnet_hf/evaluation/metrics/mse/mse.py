"""Mean squared error between predictions and references (a local `evaluate` module of r2tnet_hf)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Mean squared error of a continuous target; lower is better."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted values.
    references (`list[float]`): true values. Pairs where either is NaN (a missing phenotype) are left out.
Returns:
    mse (`float`): NaN when no pair remains.
"""


class MeanSquaredError(evaluate.Metric):
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
            return {"mse": float("nan")}
        return {"mse": float(np.mean((x - y) ** 2))}
