"""Phenotype metrics of a validation or test pass. Missing targets (NaN, or class -100) are left out and counted."""

from __future__ import annotations

import numpy as np


def pearson_r(predictions: np.ndarray, references: np.ndarray) -> float:
    p, r = predictions - predictions.mean(), references - references.mean()
    denominator = np.sqrt((p * p).sum() * (r * r).sum())
    return float((p * r).sum() / denominator) if denominator > 0 else float("nan")


def balanced_accuracy(predicted: np.ndarray, references: np.ndarray) -> float:
    """Mean recall over the classes present in `references` (plain accuracy is not balanced)."""
    recalls = [np.mean(predicted[references == c] == c) for c in np.unique(references)]
    return float(np.mean(recalls))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Binary AUROC by the rank-sum (Mann-Whitney U) formula, ties counted half."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    greater = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(greater / (len(positive) * len(negative)))


def phenotype_metrics(problem_type: str, logits: np.ndarray, references: np.ndarray, prefix: str = "val") -> dict:
    metrics: dict[str, float] = {}
    if problem_type == "regression":
        logits = logits.reshape(len(references), -1)
        maes, mses, rs = [], [], []
        for column in range(references.shape[1]):
            observed = np.isfinite(references[:, column])
            metrics[f"{prefix}_missing_targets"] = metrics.get(f"{prefix}_missing_targets", 0) + int((~observed).sum())
            if observed.sum() < 2:
                continue
            error = logits[observed, column] - references[observed, column]
            maes.append(np.abs(error).mean())
            mses.append((error**2).mean())
            rs.append(pearson_r(logits[observed, column], references[observed, column]))
        if maes:
            metrics.update(
                {f"{prefix}_mae": float(np.mean(maes)), f"{prefix}_mse": float(np.mean(mses))}
                | {f"{prefix}_pearson_r": float(np.mean(rs))}
            )
        return metrics
    if problem_type == "single_label_classification":
        observed = references != -100
        metrics[f"{prefix}_missing_targets"] = int((~observed).sum())
        predicted = logits[observed].argmax(axis=1)
        refs = references[observed]
        if len(refs):
            metrics[f"{prefix}_balanced_accuracy"] = balanced_accuracy(predicted, refs)
            metrics[f"{prefix}_accuracy"] = float(np.mean(predicted == refs))
            if logits.shape[1] == 2:
                scores = logits[observed, 1] - logits[observed, 0]
                metrics[f"{prefix}_auroc"] = auroc(scores, refs)
        return metrics
    raise ValueError(f"metrics for problem_type {problem_type!r} are not implemented")
