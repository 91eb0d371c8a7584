"""The card `r2tnet demo` writes into OUTPUT/best: what a reader must know, from the demo's own summary."""

import json

from r2tnet_hf.demo import demo_card
from r2tnet_hf.hub import check_card_offline

from .hub.conftest import make_run


def _report(pairing: str, sessions: list, subjects: int, model: float) -> dict:
    found = {"rank1": model, "rank1_std": 0.0}
    baselines = {"tangent": {"rank1": 0.5, "rank1_std": 0.1}, "raw": {"rank1": 0.25, "rank1_std": 0.05}}
    entry = {"model": found, "strongest": "tangent", "best_on_test": "tangent", "baselines": baselines}
    return {"pairing": pairing, "sessions": sessions, "subjects": subjects, "lengths": {"full": entry, "50": entry}}


def _splits(prefix: str, train: int, validation: int, test: int) -> dict:
    names = [f"{prefix}-{k:03d}" for k in range(train + validation + test)]
    return {
        "train": names[:train],
        "validation": names[train : train + validation],
        "test": names[train + validation :],
    }


def test_demo_card_states_every_cohort_held_out_the_data_and_the_input(tmp_path):
    task_run = make_run(tmp_path / "task", config_extra={"window_length": 256, "min_window_length": 32})
    splits = {"task": _splits("t", 6, 2, 8), "hcp": _splits("h", 3, 1, 3), "synthetic": _splits("s", 200, 50, 50)}
    (task_run / "splits.json").write_text(json.dumps({"seed": 0, "splits": splits["task"]}))
    summary = {
        "settings": {"labelled": 64},
        "task_fingerprint": _report("session", ["run-01", "run-03", "run-07"], 8, 0.875),
        "hcp_fingerprint": _report("session", ["half1", "half2"], 3, 0.625),
        "synthetic_fingerprint": _report("modality", ["rest", "task"], 50, 0.375),
        "phenotype_test": {
            "metrics": {"test_pearson_r": 0.9, "test_mae": 0.6},
            "baselines": {"strongest": "pca_kept", "test_pearson_r": 0.92, "test_mae": 0.5, "raw_test_pearson_r": 0.87,
                          "raw_test_mae": 0.64},
        },
    }  # fmt: skip
    card = str(demo_card(task_run / "best", task_run, summary, splits))
    check_card_offline(card)

    data = card.split("## Training data")[1].split("## Training\n")[0]
    assert "| data | real fMRI: task fMRI of the connattractor development cohort" in data
    assert "| people | 16: 6 training, 2 validation (they chose the checkpoint), 8 test (never trained on) |" in data
    assert "| training windows | random crops of 32 to 256 frames (at most the scan's length) |" in card

    evaluation = card.split("## Evaluation")[1].split("## Intended use")[0]
    task, hcp, synthetic = evaluation.split("### ")[1:4]
    assert task.startswith("Real task fMRI (connattractor)\n\nReal people; this model, trained on 6 people")
    assert "| whole scans | 0.875 ± 0.000 | `tangent` 0.500 ± 0.100 | 0.250 ± 0.050 |" in task
    assert hcp.startswith("Real resting-state fMRI (HCP")
    assert "a separate model with the same recipe, trained on 3 people, checkpoint chosen on 1" in hcp
    assert "| 50-frame segments | 0.625 ± 0.000 |" in hcp
    assert synthetic.startswith("Synthetic rest and task (simulated people)\n\nSimulated people, not real fMRI")
    assert "50 test subjects never trained on" in synthetic and "| whole scans | 0.375 ± 0.000 |" in synthetic
    assert "Planted phenotype, synthetic test subjects, ridge from 64 labels" in synthetic
    assert "Pearson r 0.900 | 0.920 | 0.870, MAE 0.600 | 0.500 | 0.640." in synthetic
    assert "atlas above" not in card
