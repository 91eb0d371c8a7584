"""The few lines a training run ends with: where the best model is, what chose it, and the held-out figures beside
the strongest classical baseline, read back from what the run wrote (`best/eval_results.json`, `test_results.json`)."""

from __future__ import annotations

import json
from pathlib import Path

# (test metric, its baseline's metric, what it is), in the order they are printed; absent ones are skipped
_TEST_FIGURES = (
    ("test_fingerprint_rank1", "test_baseline_rank1", "identification rank-1, whole scans"),
    ("test_fingerprint_segment_rank1", "test_baseline_segment_rank1", "identification rank-1, segments"),
    ("test_mae", "test_baseline_mae", "MAE"),
    ("test_pearson_r", "test_baseline_pearson_r", "Pearson r"),
    ("test_balanced_accuracy", "test_baseline_balanced_accuracy", "balanced accuracy"),
    ("test_auroc", "test_baseline_auroc", "AUROC"),
)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def summary_lines(output_dir: str | Path, task: str, seconds: float) -> list[str]:
    output = Path(output_dir)
    lines = [f"{task}: finished in {seconds:.0f} s; wrote {output}/ (best/, last/, checkpoints/, metrics.jsonl)"]
    best = _read(output / "best" / "eval_results.json")
    if best is not None:
        lines.append(
            f"  best/: step {best.get('step')}, chosen on {best.get('split', 'validation')} by {best.get('metric')} = "
            f"{best.get('value'):.4g}"
            if isinstance(best.get("value"), (int, float))
            else f"  best/: {best}"
        )
    results = _read(output / "test_results.json") or {}
    test = dict(results.get("metrics", {}))
    baselines = results.get("baselines") or {}
    if "strongest" in baselines:  # a phenotype run: ridge on the strongest FC baseline, chosen on validation
        test.update(test_baseline=baselines["strongest"], test_baseline_mae=baselines.get("test_mae"))
        test["test_baseline_pearson_r"] = baselines.get("test_pearson_r")
    if not test:
        lines.append("  no test split: no held-out figures (pass --splits with test subjects)")
    for metric, baseline, words in _TEST_FIGURES:
        if isinstance(test.get(metric), (int, float)):
            beside = test.get(baseline)
            name = test.get("test_baseline") if "segment" not in metric else test.get("test_segment_baseline")
            against = (
                f" vs {beside:.4g} for the strongest baseline ({name})" if isinstance(beside, (int, float)) else ""
            )
            lines.append(f"  test ({test.get('test_subjects', '?')} subjects): {words} {test[metric]:.4g}{against}")
    return lines
