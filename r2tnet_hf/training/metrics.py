"""Phenotype metrics of a validation or test pass, computed with the package's local `evaluate` modules.

Missing targets (NaN for regression, class -100) are left out and counted in `<prefix>_missing_targets`.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def _metric(name: str):
    from ..evaluation import load_metric

    return load_metric(name)


def compute(name: str, **inputs) -> float:
    return float(_metric(name).compute(**inputs)[name])


def phenotype_metrics(problem_type: str, logits: np.ndarray, references: np.ndarray, prefix: str = "val") -> dict:
    metrics: dict[str, float] = {}
    if problem_type == "regression":
        logits = logits.reshape(len(references), -1)
        per_target = {"mae": [], "mse": [], "pearson_r": []}
        missing = 0
        for column in range(references.shape[1]):
            observed = np.isfinite(references[:, column])
            missing += int((~observed).sum())
            if observed.sum() < 2:
                continue
            for name, values in per_target.items():
                values.append(
                    compute(name, predictions=logits[observed, column], references=references[observed, column])
                )
        metrics[f"{prefix}_missing_targets"] = missing
        for name, values in per_target.items():
            if values:
                metrics[f"{prefix}_{name}"] = float(np.mean(values))
        return metrics
    if problem_type == "single_label_classification":
        observed = references != -100
        metrics[f"{prefix}_missing_targets"] = int((~observed).sum())
        refs = references[observed]
        if len(refs):
            predicted = logits[observed].argmax(axis=1)
            metrics[f"{prefix}_balanced_accuracy"] = compute(
                "balanced_accuracy", predictions=predicted, references=refs
            )
            metrics[f"{prefix}_accuracy"] = float(np.mean(predicted == refs))
            scores = logits[observed]
            if scores.shape[1] == 2:  # the logit difference ranks like the probability of class 1
                scores = scores[:, 1] - scores[:, 0]
            else:  # one-vs-rest needs each class's probability: raw logits are not comparable across rows
                shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
                scores = shifted / shifted.sum(axis=1, keepdims=True)
            metrics[f"{prefix}_auroc"] = compute("auroc", prediction_scores=scores, references=refs)
        return metrics
    raise ValueError(f"metrics for problem_type {problem_type!r} are not implemented")
