"""`r2tnet fingerprint` end to end on a tiny model and a synthetic cohort, in process."""

import json

import numpy as np
import pytest
import torch

from r2tnet_hf import FmriProcessor, R2TNetConfig, R2TNetForContrastivePretraining, RoiTransformerConfig
from r2tnet_hf.cli import main
from r2tnet_hf.data.manifest import read_manifest
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from r2tnet_hf.evaluation.fingerprint_scans import encode_series, load_encoder, select_records


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("fingerprint")
    make_synthetic_cohort(root / "cohort", subjects=10, sessions=3, rois=8, frames=64)
    backbone = RoiTransformerConfig(
        num_rois=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=4, intermediate_size=64
    )
    torch.manual_seed(0)
    model = R2TNetForContrastivePretraining(R2TNetConfig(backbone_config=backbone, signature_dim=16)).eval()
    model.save_pretrained(root / "model")
    FmriProcessor(num_rois=8, window_length=24).save_pretrained(root / "model")  # 64 frames → 3 windows
    return root, model


def fingerprint(root, output, *extra):
    manifest = str(root / "cohort" / "manifest.tsv")
    return main(["fingerprint", "--model", str(root / "model"), "--manifest", manifest, "--output", str(output),
                 "--quiet", *extra])  # fmt: skip


def test_without_splits_every_pair_of_sessions_is_scored_beside_raw_fc(workspace, capsys):
    root, _ = workspace
    output = root / "out"
    assert fingerprint(root, output) == 0
    printed = capsys.readouterr().out
    assert "no --splits" in printed and "raw FC (Finn 2015)" in printed and "±" in printed
    report = json.loads((output / "fingerprint.json").read_text())
    full = report["lengths"]["full"]
    assert len(full["model"]["pairs"]) == 6  # 3 sessions: every ordered pair
    assert set(full["baselines"]) == {"raw"} and full["strongest"] is None
    assert report["subjects"] == 10 and report["scans"] == 30 and report["pairing"] == "session"
    assert report["signature_dim"] == 16 and report["fc_features"] == 28
    assert full["baselines"]["raw"]["rank1"] > 0.5  # subject-specific connectivity: FC finds most (chance 0.1)
    for key in ("rank1", "rank1_std", "rank1_min", "rank1_max", "map"):
        assert key in full["model"]
    for name in ("similarity.png", "similarity_baseline.png"):
        assert (output / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no staging left

    # by modality, two sessions only, into the same folder (it wrote it, so it may replace it)
    assert fingerprint(root, output, "--pairing", "modality", "--sessions", "rest", "task", "--batch-size", "2") == 0
    report = json.loads((output / "fingerprint.json").read_text())
    assert report["pairing"] == "modality" and report["sessions"] == ["rest", "task"]
    assert len(report["lengths"]["full"]["model"]["pairs"]) == 2
    assert fingerprint(root, output, "--sessions", "ses-1", "ses-3") == 0
    report = json.loads((output / "fingerprint.json").read_text())
    assert report["sessions"] == ["ses-1", "ses-3"] and report["scans"] == 20


def test_with_splits_the_baselines_are_fitted_on_train_and_the_test_subjects_scored(workspace, tmp_path, capsys):
    root, _ = workspace
    subjects = [f"sub-{k:03d}" for k in range(1, 11)]
    plain = tmp_path / "splits.json"  # a plain splits file, not only what `r2tnet split` writes
    plain.write_text(json.dumps({"train": subjects[:4], "validation": subjects[4:6], "test": subjects[6:]}))
    output = tmp_path / "out"
    assert fingerprint(root, output, "--splits", str(plain), "--segment-length", "16", "32") == 0
    printed = capsys.readouterr().out
    assert "strongest baseline:" in printed and "16-frame segments" in printed
    report = json.loads((output / "fingerprint.json").read_text())
    assert list(report["lengths"]) == ["full", "16", "32"] and report["subjects"] == 4
    for entry in report["lengths"].values():
        assert set(entry["baselines"]) == {"raw", "state_centred", "tangent", "pca_removed", "pca_kept"}
        assert entry["strongest"] in entry["baselines"] and entry["description"]
        assert entry["model"]["queries"] > 0
    segments = report["lengths"]["16"]
    assert segments["model"]["queries"] == 6 * 4 * 4  # 6 pairs × 4 test subjects × 4 segments of 16 frames
    assert report["lengths"]["32"]["frames_unused"] == 0

    overlapping = tmp_path / "bad.json"
    overlapping.write_text(json.dumps({"train": subjects[:4], "validation": subjects[3:6], "test": subjects[6:]}))
    assert fingerprint(root, tmp_path / "x", "--splits", str(overlapping)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "bad.json" in error and "share 1 subjects" in error
    assert not (tmp_path / "x").exists()


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


def test_subjects_with_scans_in_one_session_only_are_left_out_and_listed(workspace):
    root, _ = workspace
    manifest = read_manifest(root / "cohort" / "manifest.tsv")
    manifest.records = [r for r in manifest.records if not (r.subject == "sub-002" and r.session != "ses-1")]
    records, unpaired = select_records(manifest, "session")
    assert unpaired == ["sub-002"] and "sub-002" not in {r.subject for r in records}
    assert {r.modality for r in records} == {"rest"} and len(records) == 9 * 3
    records, _ = select_records(manifest, "modality")
    assert {r.modality for r in records} == {"rest", "task"}


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
    assert "--pairing" in text and "--splits" in text and "--segment-length" in text and "tangent-space" in text
