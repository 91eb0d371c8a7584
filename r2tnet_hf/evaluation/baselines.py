"""The ridge-on-FC baseline for phenotype prediction: Finn-style FC features, ridge regression, alpha chosen on
validation. The number a signature plus a linear head has to beat on the same held-out subjects.
"""

from __future__ import annotations

import numpy as np

from .fingerprinting import functional_connectivity

ALPHAS = tuple(10.0**k for k in range(-2, 6))


def fit_ridge(features: np.ndarray, targets: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with an unpenalised intercept, solved in the dual (features ≫ samples for FC)."""
    mean_x, mean_y = features.mean(axis=0), targets.mean(axis=0)
    x, y = features - mean_x, targets - mean_y
    gram = x @ x.T
    dual = np.linalg.solve(gram + alpha * np.eye(len(x)), y)
    weights = x.T @ dual
    return weights, mean_y - mean_x @ weights


def ridge_fc_baseline(shards, rows: dict[str, list[int]], targets: dict[str, np.ndarray], alphas=ALPHAS) -> dict:
    """Fit on train rows, pick alpha by validation MAE, report test MAE and Pearson r (one target column at a time,
    averaged). Rows whose target is missing are left out of fitting and scoring, and counted."""
    from ..data.streaming import decode_array
    from ..training.metrics import compute

    features = {
        name: np.stack([functional_connectivity(decode_array(shards.read_row(r))) for r in split_rows])
        for name, split_rows in rows.items()
    }
    maes, rs, chosen = [], [], []
    for column in range(targets["train"].shape[1]):
        observed = {name: np.isfinite(t[:, column]) for name, t in targets.items()}

        def part(name, observed=observed, column=column):
            return features[name][observed[name]], targets[name][observed[name], column]

        (xt, yt), (xv, yv), (xs, ys) = part("train"), part("validation"), part("test")
        scores = []
        for alpha in alphas:
            weights, bias = fit_ridge(xt, yt, alpha)
            scores.append(np.abs(xv @ weights + bias - yv).mean())
        alpha = alphas[int(np.argmin(scores))]
        weights, bias = fit_ridge(xt, yt, alpha)
        prediction = xs @ weights + bias
        maes.append(float(np.abs(prediction - ys).mean()))
        rs.append(compute("pearson_r", predictions=prediction, references=ys))
        chosen.append(alpha)
    return {"test_mae": float(np.mean(maes)), "test_pearson_r": float(np.mean(rs)), "alpha": chosen}
