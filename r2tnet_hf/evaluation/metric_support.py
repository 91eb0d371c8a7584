"""What the local `evaluate` metric modules (`metrics/<name>/<name>.py`) share: their `MetricInfo` and the
NaN-free pairs of the regression metrics.

The modules import it by its absolute name, as a library. `evaluate.load(path)` (0.4.6) copies a metric script into
`$HF_HOME/modules/evaluate_modules/metrics/<name>/<hash>/` and copies beside it only the files of its relative
imports, and only from the script's own folder (`from .helper import x` brings `<folder>/helper.py`; `from ..helper`
is not copied and fails to import; a `# From: PATH` comment is read against the working directory). A helper shared
by six folders would have to be copied into each of them. An absolute import is a library import to `evaluate`: it
checks that the package imports and copies nothing, so a metric folder loads by path alone, from any place, offline,
wherever r2tnet_hf is installed.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_FLOAT_PAIRS = """
Args:
    predictions (`list[float]`): predicted values.
    references (`list[float]`): true values. Pairs where either is NaN (a missing phenotype) are left out.
Returns:
    {returns}
"""


def metric_info(description: str, inputs_description: str, features: dict | list[dict]) -> evaluate.MetricInfo:
    """The `evaluate.MetricInfo` of a shipped metric (no citation).

    Args:
        description (`str`): one line on what the metric measures.
        inputs_description (`str`): the `Args:` and `Returns:` of `compute`.
        features (`dict` or `list[dict]`): each input's `datasets` feature, or one such mapping per accepted form of
            the inputs.
    """
    if isinstance(features, dict):
        features = datasets.Features(features)
    else:
        features = [datasets.Features(form) for form in features]
    return evaluate.MetricInfo(
        description=description, citation="", inputs_description=inputs_description, features=features
    )


def float_pairs_info(description: str, returns: str) -> evaluate.MetricInfo:
    """The `MetricInfo` of a metric of paired continuous values: `predictions` and `references` (`list[float]`).

    `returns` is the line that documents the result, e.g. "mae (`float`): NaN when no pair remains."
    """
    value = datasets.Value("float64")
    inputs_description = _FLOAT_PAIRS.format(returns=returns)
    return metric_info(description, inputs_description, {"predictions": value, "references": value})


def finite_pairs(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    """`predictions` and `references` as float64 arrays, without the pairs where either is NaN (or infinite)."""
    x, y = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]
