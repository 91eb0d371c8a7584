"""`r2tnet fingerprint` end to end on a tiny model and a synthetic cohort, in process."""

import json

import numpy as np
import pytest
import torch

from r2tnet_hf import FmriProcessor, R2TNetConfig, R2TNetForContrastivePretraining, RoiTransformerConfig
from r2tnet_hf.cli import main
from r2tnet_hf.data.manifest import read_manifest
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from r2tnet_hf.evaluation.fingerprint_scans import encode_series, load_encoder, pair_scans


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("fingerprint")
    make_synthetic_cohort(root / "cohort", subjects=4, sessions=2, rois=8, frames=64)
    backbone = RoiTransformerConfig(
        num_rois=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=4, intermediate_size=64
    )
    torch.manual_seed(0)
    model = R2TNetForContrastivePretraining(R2TNetConfig(backbone_config=backbone, signature_dim=16)).eval()
    model.save_pretrained(root / "model")
    FmriProcessor(num_rois=8, window_length=24).save_pretrained(root / "model")  # 64 frames → 3 windows
    return root, model


def test_fingerprint_writes_both_reports_and_plots(workspace, capsys):
    root, _ = workspace
    output = root / "out"
    manifest = str(root / "cohort" / "manifest.tsv")
    assert (
        main(
            ["fingerprint", "--model", str(root / "model"), "--manifest", manifest, "--output", str(output), "--quiet"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Rank-1 A→B" in printed and "FC (Finn 2015)" in printed
    report = json.loads((output / "fingerprint.json").read_text())
    for key in (
        "model_rank1_a2b",
        "model_rank1_b2a",
        "model_map",
        "fc_rank1_a2b",
        "fc_rank1_b2a",
        "fc_map",
        "icc_mean",
    ):
        assert key in report
    assert report["subjects"] == 4 and report["rows_a"] == 4 and report["pairing"] == "session"
    assert report["signature_dim"] == 16 and report["fc_features"] == 28
    assert report["fc_rank1_a2b"] == 1.0  # subject-specific connectivity: the FC baseline finds everyone
    for name in ("similarity.png", "similarity_fc.png"):
        assert (output / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no staging left

    # Rerun by modality into the same folder (it wrote it, so it may replace it).
    assert main(["fingerprint", "--model", str(root / "model"), "--manifest", manifest, "--output", str(output),
                 "--pairing", "modality", "--batch-size", "2", "--quiet"]) == 0  # fmt: skip
    report = json.loads((output / "fingerprint.json").read_text())
    assert report["pairing"] == "modality" and report["rows_a"] == 8 and report["rows_b"] == 8


def test_whole_scans_average_their_window_signatures(workspace):
    root, model = workspace
    encoder, processor = load_encoder(root / "model")
    manifest = read_manifest(root / "cohort" / "manifest.tsv")
    series = processor.prepare(manifest.resolve(manifest.records[0]), manifest.records[0].repetition_time)
    signature = encode_series(encoder, processor, [series], batch_size=2, progress=False)[0]
    windows = [series.data[:, start : start + 24] for start in (0, 24, 48)]  # 24 + 24 + 16 real frames
    with torch.no_grad():
        rows = [model.r2tnet(torch.from_numpy(w)[None], repetition_time=0.8).signature[0].double() for w in windows]
    expected = torch.nn.functional.normalize(24 * rows[0] + 24 * rows[1] + 16 * rows[2], dim=0).numpy()
    np.testing.assert_allclose(signature, expected, atol=1e-5)
    assert abs(np.linalg.norm(signature) - 1) < 1e-6


def test_pairing_leaves_out_subjects_with_one_side_only(workspace):
    root, _ = workspace
    manifest = read_manifest(root / "cohort" / "manifest.tsv")
    manifest.records = [r for r in manifest.records if not (r.subject == "sub-002" and r.session == "ses-2")]
    side_a, side_b, unpaired = pair_scans(manifest, "session")
    assert unpaired == ["sub-002"]
    assert {r.session for r in side_a} == {"ses-1"} and {r.session for r in side_b} == {"ses-2"}
    assert {r.modality for r in side_a + side_b} == {"rest"} and len(side_a) == 3
    rest, task, _ = pair_scans(manifest, "modality")
    assert {r.modality for r in rest} == {"rest"} and {r.modality for r in task} == {"task"}


def test_a_bad_scan_is_one_line_exit_2_and_nothing_written(workspace, tmp_path, capsys):
    root, _ = workspace
    cohort = tmp_path / "cohort"
    make_synthetic_cohort(cohort, subjects=3, sessions=2, rois=8, frames=40, task=False)
    bad = read_manifest(cohort / "manifest.tsv").records[3]
    (cohort / bad.path).write_text("roi_000\troi_001\n1.0\tnot-a-number\n")
    output = tmp_path / "out"
    code = main(["fingerprint", "--model", str(root / "model"), "--manifest", str(cohort / "manifest.tsv"),
                 "--output", str(output), "--quiet"])  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and bad.path in error and error.startswith("r2tnet fingerprint: error:")
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    code = main(["fingerprint", "--model", str(root / "model"), "--manifest", str(root / "cohort" / "manifest.tsv"),
                 "--output", str(foreign), "--quiet"])  # fmt: skip
    assert code == 2 and (foreign / "keep.txt").read_text() == "mine"
    assert main(["fingerprint", "--model", str(tmp_path), "--manifest", str(root / "cohort" / "manifest.tsv"),
                 "--output", str(tmp_path / "x"), "--quiet"]) == 2  # fmt: skip


def test_help_explains_the_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fingerprint", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--pairing" in text and "Finn" in text and "--batch-size" in text
