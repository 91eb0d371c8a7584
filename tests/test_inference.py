import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from r2tnet_hf import R2TNetForPhenotypePrediction, R2TNetModel
from r2tnet_hf.cli import main
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from r2tnet_hf.inference import collect_scans, scan_identity

from .hub.conftest import tiny_config, tiny_processor


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """3 subjects × 1 session × rest + task, 16 ROIs × 100 frames; one rest scan holds a NaN."""
    root = tmp_path_factory.mktemp("cohort")
    make_synthetic_cohort(root, subjects=3, sessions=1, rois=16, frames=100, repetition_time=0.8, seed=1)
    bad = root / "sub-002" / "ses-1" / "func" / "sub-002_ses-1_task-rest_timeseries.tsv"
    lines = bad.read_text().splitlines()
    cells = lines[10].split("\t")
    cells[3] = "nan"
    lines[10] = "\t".join(cells)
    bad.write_text("\n".join(lines) + "\n")
    return root, bad


def save_model(folder: Path, model):
    model.save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    regression = R2TNetForPhenotypePrediction(tiny_config(num_labels=1, problem_type="regression"))
    classes = R2TNetForPhenotypePrediction(
        tiny_config(
            num_labels=3, id2label={0: "control", 1: "adhd", 2: "asd"}, problem_type="single_label_classification"
        )
    )
    multi = R2TNetForPhenotypePrediction(tiny_config(num_labels=2, problem_type="multi_label_classification"))
    encoder = R2TNetModel(tiny_config())
    return {
        name: save_model(root / name, model)
        for name, model in (("regression", regression), ("classes", classes), ("multi", multi), ("encoder", encoder))
    }


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_good_rows_and_lists_the_bad_file(cohort, models, tmp_path, capsys):
    root, bad = cohort
    output = tmp_path / "preds.csv"
    code = main(["predict", "--model", str(models["regression"]), "--input", str(root / "manifest.tsv"),
                 "--output", str(output), "--batch-size", "4", "--quiet"])  # fmt: skip
    assert code == 2
    rows = read_csv(output)
    assert [(r["subject"], r["session"]) for r in rows] == [("sub-001", "ses-1"), ("sub-003", "ses-1")]
    assert list(rows[0]) == ["subject", "session", "path", "num_windows", "prediction"]
    assert all(r["num_windows"] == "3" and np.isfinite(float(r["prediction"])) for r in rows)  # 100 frames / 40
    err = capsys.readouterr().err
    assert f"skipped {bad}: expected finite values" in err
    skipped = (tmp_path / "preds.csv.skipped.tsv").read_text().splitlines()
    assert skipped[0] == "path\treason" and len(skipped) == 2 and skipped[1].startswith(str(bad))

    # The prediction is the mean over the scan's windows of the model's output.
    model = R2TNetForPhenotypePrediction.from_pretrained(models["regression"]).eval()
    batch = tiny_processor()(rows[0]["path"], repetition_time=0.8, all_windows=True, return_tensors="pt")
    batch.pop("scan_index")
    with torch.no_grad():
        expected = model(**batch).logits.mean().item()
    assert float(rows[0]["prediction"]) == pytest.approx(expected, abs=1e-5)

    # A clean rerun (the task scans are all good) exits 0 and removes the stale skipped list.
    assert main(["predict", "--model", str(models["regression"]), "--input", str(root / "manifest.tsv"),
                 "--modality", "task", "--output", str(output), "--quiet"]) == 0  # fmt: skip
    assert len(read_csv(output)) == 3
    assert not (tmp_path / "preds.csv.skipped.tsv").exists()


def test_classification_columns(cohort, models, tmp_path):
    root, _ = cohort
    out = tmp_path / "classes.csv"
    main(["predict", "--model", str(models["classes"]), "--input", str(root / "manifest.tsv"),
          "--output", str(out), "--quiet"])  # fmt: skip
    rows = read_csv(out)
    assert list(rows[0])[4:] == ["predicted_label", "prob_control", "prob_adhd", "prob_asd"]
    for row in rows:
        probabilities = [float(row[f"prob_{name}"]) for name in ("control", "adhd", "asd")]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)
        assert row["predicted_label"] == ["control", "adhd", "asd"][int(np.argmax(probabilities))]
    out = tmp_path / "multi.tsv"
    main(["predict", "--model", str(models["multi"]), "--input", str(root / "manifest.tsv"),
          "--output", str(out), "--modality", "all", "--quiet"])  # fmt: skip
    lines = out.read_text().splitlines()
    assert lines[0].split("\t")[4:] == ["prob_class_0", "prob_class_1"] and len(lines) == 1 + 5  # 6 scans, 1 bad


def test_signatures_parquet_from_a_folder(cohort, models, tmp_path):
    root, bad = cohort
    out = tmp_path / "sig.parquet"
    code = main(["signatures", "--model", str(models["regression"]), "--input", str(root),
                 "--output", str(out), "--repetition-time", "0.8", "--quiet"])  # fmt: skip
    assert code == 2  # the NaN scan
    table = pq.read_table(out)
    assert table.column_names == ["subject", "session", "path", "num_windows", "signature"]
    assert table.num_rows == 5 and str(table.schema.field("signature").type) == "fixed_size_list<element: float>[2048]"
    signatures = np.asarray(table.column("signature").to_pylist(), dtype=np.float32)
    assert np.allclose(np.linalg.norm(signatures, axis=1), 1, atol=1e-5)
    assert str(bad) not in table.column("path").to_pylist()
    assert (tmp_path / "sig.parquet.skipped.tsv").read_text().count("\n") == 2


def test_predict_needs_a_phenotype_head(cohort, models, tmp_path, capsys):
    root, _ = cohort
    code = main(["predict", "--model", str(models["encoder"]), "--input", str(root / "manifest.tsv"),
                 "--output", str(tmp_path / "p.csv"), "--quiet"])  # fmt: skip
    assert code == 2 and not (tmp_path / "p.csv").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "classifier" in err and str(models["encoder"]) in err


def test_scan_identity_and_collection(tmp_path):
    assert scan_identity(Path("sub-07_ses-2_task-rest_bold.dtseries.nii")) == ("sub-07", "ses-2")
    assert scan_identity(Path("sub-07_task-rest_timeseries.tsv")) == ("sub-07", "")
    assert scan_identity(Path("patient12.nii.gz")) == ("patient12", "")
    (tmp_path / "participants.tsv").write_text("participant_id\nsub-01\n")
    np.save(tmp_path / "sub-01_ses-1.npy", np.zeros((40, 16)))
    items = collect_scans(tmp_path, repetition_time=2.0)
    assert [(i.subject, i.session, i.repetition_time) for i in items] == [("sub-01", "ses-1", 2.0)]


def test_exit_status_in_a_subprocess(cohort, models, tmp_path):
    root, bad = cohort
    result = subprocess.run(
        [sys.executable, "-m", "r2tnet_hf.cli", "predict", "--model", str(models["regression"]), "--input", str(root),
         "--repetition-time", "0.8", "--output", str(tmp_path / "p.csv"), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and str(bad) in result.stderr and "Traceback" not in result.stderr
    assert len(read_csv(tmp_path / "p.csv")) == 5  # a folder: rest and task scans, all but the corrupt one


def test_help_explains(capsys):
    for command in ("predict", "signatures", "publish"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "skipped.tsv" in shown and "--batch-size" in shown and "--dry-run" in shown and "one commit" in shown
