"""Evaluation: identification (fingerprinting), test-retest ICC, the classical FC baselines, and local `evaluate`
metrics.

The metric modules live in `r2tnet_hf/evaluation/metrics/<name>/<name>.py` (package data) and load by path, so they
work offline (`HF_HUB_OFFLINE=1`): `load_metric("mae").compute(predictions=..., references=...)`. What they share
is in `metric_support`, imported by its absolute name (`evaluate` copies only same-folder relative imports).
"""

from __future__ import annotations

from pathlib import Path

from .baselines import BASELINE_NAMES, baseline_identification, fit_baselines, ridge_baselines
from .fingerprinting import (
    ScanSet,
    fc_features,
    fingerprint_report,
    functional_connectivity,
    icc,
    identification,
    pairwise_identification,
    plot_similarity,
    similarity_matrix,
)

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
METRIC_NAMES = ("pearson_r", "mse", "mae", "balanced_accuracy", "auroc", "fingerprint")


def metric_path(name: str) -> Path:
    """The folder of a shipped metric module; `name` may carry the `val_`/`test_` prefix used in configs."""
    for prefix in ("val_", "test_", "eval_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; the shipped metrics are {', '.join(METRIC_NAMES)}")
    return METRICS_DIR / name


def load_metric(name: str, **kwargs):
    """`evaluate.load` of a metric shipped in the package, by path (no Hub access).

    Args:
        name (`str`): one of `pearson_r`, `mse`, `mae`, `balanced_accuracy`, `auroc`, `fingerprint` (a `val_` or
            `test_` prefix is ignored, so a preset's or config's `metric` can be passed as is).
        kwargs: passed to `evaluate.load` (e.g. `experiment_id`, `keep_in_memory`).

    Returns:
        `evaluate.EvaluationModule`; `.compute(...)` returns `{name: value}` (for `fingerprint`, the Rank-1 and mAP
        keys).
    """
    import evaluate

    return evaluate.load(str(metric_path(name)), **kwargs)


__all__ = [
    "BASELINE_NAMES",
    "METRIC_NAMES",
    "ScanSet",
    "baseline_identification",
    "fc_features",
    "fingerprint_report",
    "fit_baselines",
    "functional_connectivity",
    "icc",
    "identification",
    "load_metric",
    "metric_path",
    "pairwise_identification",
    "plot_similarity",
    "ridge_baselines",
    "similarity_matrix",
]
