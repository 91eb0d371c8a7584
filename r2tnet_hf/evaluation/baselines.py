"""The ridge-on-FC baseline for phenotype prediction: Finn-style FC features, ridge regression, alpha chosen on
validation. The number a signature plus a linear head has to beat on the same held-out subjects.

`fit_ridge_by_validation` is the one solver: the baseline runs it on FC, and a ridge probe of a frozen R2T-Net
(`probe_solver="ridge"`) runs it on signatures, so the two differ only in their features.
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


def fit_ridge_by_validation(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, alphas=ALPHAS
) -> tuple[np.ndarray, float, float]:
    """Ridge fitted on the training rows for every alpha; the one with the lowest validation MAE wins.

    Args:
        train_x (`np.ndarray` of shape `(n, features)`), train_y (`np.ndarray` of shape `(n,)`): fitting rows.
        val_x (`np.ndarray` of shape `(m, features)`), val_y (`np.ndarray` of shape `(m,)`): selection rows.

    Returns:
        `(weights, bias, alpha)`.
    """
    fits = [fit_ridge(train_x, train_y, alpha) for alpha in alphas]
    errors = [np.abs(val_x @ weights + bias - val_y).mean() for weights, bias in fits]
    best = int(np.argmin(errors))
    weights, bias = fits[best]
    return weights, float(bias), float(alphas[best])


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
        weights, bias, alpha = fit_ridge_by_validation(xt, yt, xv, yv, alphas)
        prediction = xs @ weights + bias
        maes.append(float(np.abs(prediction - ys).mean()))
        rs.append(compute("pearson_r", predictions=prediction, references=ys))
        chosen.append(alpha)
    return {"test_mae": float(np.mean(maes)), "test_pearson_r": float(np.mean(rs)), "alpha": chosen}
