"""The acceptance check on real data: on the connattractor development cohort (subjects 1-16 only), by subject-level
cross-validation, R2T-Net's held-out Rank-1 at full length and from 50-frame segments is at least that of the strongest
classical baseline fitted on the same training subjects and chosen on the same validation subjects."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_signature_is_at_least_the_strongest_baseline_on_new_people(tmp_path):
    from r2tnet_hf.data.demo import find_connattractor

    try:
        find_connattractor()
    except ValueError:
        pytest.skip("connattractor is not installed (pip install 'r2tnet-hf[demo]')")
    output = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "connattractor_fingerprint.py"), "--output", str(output),
         "--repetitions", "1", "--max-steps", "10", "--eval-steps", "5", "--segment-length", "50"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    assert len({row["fold"] for row in summary["folds"]}) == 2
    for length in ("full", "50"):
        found = summary[length]
        assert found["model"] >= found["baseline"], (length, found)
        assert found["model"] >= max(found["per_baseline"].values()), (length, found)  # also the best in hindsight
        assert found["model"] > found["raw"]
    # every fold's test subjects are new: in neither its training nor its validation subjects
    for fold in range(2):
        splits = json.loads((output / f"fold_{fold}" / "splits.json").read_text())["splits"]
        assert not set(splits["test"]) & (set(splits["train"]) | set(splits["validation"]))
        assert all(int(s.split("-")[1]) <= 16 for names in splits.values() for s in names)
