import json
import multiprocessing
import os
import signal

import numpy as np
import pyarrow.parquet as pq
import pytest

from r2tnet_hf import FmriInputError, FmriProcessor
from r2tnet_hf.data import shards as shards_module
from r2tnet_hf.data.manifest import read_manifest
from r2tnet_hf.data.shards import ConvertOptions, convert, sha256_file
from r2tnet_hf.data.streaming import ShardFolder, decode_array


def test_convert_round_trip_rows_and_checksums(synthetic_cohort, tmp_path):
    out = tmp_path / "shards"
    result = convert(synthetic_cohort / "manifest.tsv", out, ConvertOptions(shard_size_mb=0.02), progress=False)
    manifest = read_manifest(synthetic_cohort / "manifest.tsv")
    assert result.rows == result.scans == len(manifest.records) == 24 and not result.skipped
    summary = json.loads((out / "manifest.json").read_text())
    assert len(summary["shards"]) > 2
    for shard in summary["shards"]:
        assert sha256_file(out / shard["file"]) == shard["sha256"]
        assert pq.read_metadata(out / shard["file"]).num_rows == shard["rows"]
    folder = ShardFolder(out)
    processor = FmriProcessor.from_pretrained(out)
    assert processor.num_rois == 12 and processor.roi_labels[0] == "roi_000"
    # Every input scan comes back exactly once, with the processor's z-scored values and its metadata.
    rows = [folder.read_row(i) for i in range(len(folder))]
    assert sorted(r["scan_index"] for r in rows) == list(range(24))
    for row in rows:
        record = manifest.records[row["scan_index"]]
        assert (row["subject"], row["session"], row["modality"]) == (record.subject, record.session, record.modality)
        assert row["score"] == pytest.approx(float(record.phenotypes["score"]))
        expected = processor.prepare(str(manifest.resolve(record)), record.repetition_time).data
        np.testing.assert_allclose(decode_array(row), expected, atol=1e-6)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "| scans converted | 24 (12 rest, 12 task) |" in card
    from datasets import load_dataset

    streamed = load_dataset("parquet", data_files=folder.files, streaming=True, split="train")
    assert sorted(r["scan_index"] for r in streamed) == list(range(24))


def _convert_and_die(manifest, out, after_shards):
    """Child process: convert, killing itself with SIGKILL right after the journal records `after_shards` shards."""
    original = shards_module._write_journal

    def write_then_maybe_die(state_dir, journal):
        original(state_dir, journal)
        if len(journal["shards"]) >= after_shards:
            os.kill(os.getpid(), signal.SIGKILL)

    shards_module._write_journal = write_then_maybe_die
    convert(manifest, out, ConvertOptions(shard_size_mb=0.02), progress=False)


def test_killed_conversion_resumes_to_the_same_shards(synthetic_cohort, tmp_path):
    reference = convert(
        synthetic_cohort / "manifest.tsv", tmp_path / "reference", ConvertOptions(shard_size_mb=0.02), progress=False
    )
    out = tmp_path / "killed"
    child = multiprocessing.get_context("fork").Process(
        target=_convert_and_die, args=(synthetic_cohort / "manifest.tsv", out, 2)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert not (out / "manifest.json").exists() and (out / ".convert-state" / "journal.json").exists()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))  # no half-written shard
    resumed = convert(synthetic_cohort / "manifest.tsv", out, ConvertOptions(shard_size_mb=0.02), progress=False)
    assert [s["sha256"] for s in resumed.shards] == [s["sha256"] for s in reference.shards]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "reference").iterdir())
    again = convert(synthetic_cohort / "manifest.tsv", out, ConvertOptions(shard_size_mb=0.02), progress=False)
    assert again.up_to_date


def _manifest_with_bad_file(tmp_path, synthetic_cohort):
    """The cohort's first three scans (absolute paths) and a fourth file holding a NaN."""
    lines = (synthetic_cohort / "manifest.tsv").read_text().splitlines()
    bad = tmp_path / "bad.tsv"
    bad.write_text("roi_000\troi_001\nnan\t1\n")
    rows = []
    for line in lines[1:5]:
        cells = line.split("\t")
        cells[4] = str(synthetic_cohort / cells[4])
        rows.append(cells)
    rows[3][4] = str(bad)
    manifest = tmp_path / "with_bad.tsv"
    manifest.write_text("\n".join([lines[0], *("\t".join(cells) for cells in rows)]) + "\n")
    return manifest, bad


def test_bad_scan_stops_without_leaving_anything(tmp_path, synthetic_cohort):
    manifest, _ = _manifest_with_bad_file(tmp_path, synthetic_cohort)
    out = tmp_path / "out"
    with pytest.raises(FmriInputError, match=r"bad\.tsv: expected"):
        convert(manifest, out, ConvertOptions(shard_size_mb=0.0001), progress=False)
    assert not out.exists() or not list(out.iterdir())


def test_skip_bad_lists_the_scan_with_its_reason(tmp_path, synthetic_cohort):
    manifest, bad = _manifest_with_bad_file(tmp_path, synthetic_cohort)
    result = convert(manifest, tmp_path / "out", ConvertOptions(skip_bad=True), progress=False)
    assert result.rows == 3 and len(result.skipped) == 1
    assert result.skipped[0]["path"] == str(bad) and "bad.tsv: expected" in result.skipped[0]["reason"]
    summary = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert summary["skipped"] == result.skipped
    assert "## Skipped scans" in (tmp_path / "out" / "README.md").read_text()


def test_volumes_become_one_row_per_window(tmp_path):
    import nibabel as nib

    data = np.random.default_rng(0).standard_normal((4, 4, 3, 10)).astype(np.float32)
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 1.5
    image.to_filename(tmp_path / "bold.nii.gz")
    (tmp_path / "m.tsv").write_text("subject\tsession\tmodality\ttask\tpath\nA\t1\trest\trest\tbold.nii.gz\n")
    result = convert(tmp_path / "m.tsv", tmp_path / "out", ConvertOptions(window=4, min_length=2), progress=False)
    folder = ShardFolder(tmp_path / "out")
    rows = [folder.read_row(i) for i in range(result.rows)]
    assert [(r["window_start"], r["num_frames"]) for r in rows] == [(0, 4), (4, 4), (8, 2)]  # last window kept
    joined = np.concatenate([decode_array(r) for r in rows], axis=-1)
    expected = FmriProcessor(input_type="volume", min_length=2).prepare(str(tmp_path / "bold.nii.gz")).data
    np.testing.assert_allclose(joined, expected, atol=1e-6)
    assert folder.processor.volume_shape == [1, 4, 4, 3]


def test_float16_storage(synthetic_cohort, tmp_path):
    convert(synthetic_cohort / "manifest.tsv", tmp_path / "f16", ConvertOptions(dtype="float16"), progress=False)
    folder = ShardFolder(tmp_path / "f16")
    row = folder.read_row(0)
    assert row["dtype"] == "float16" and len(row["data"]) == 12 * 96 * 2


def test_refuses_a_foreign_output_folder(synthetic_cohort, tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(FmriInputError, match="expected an empty folder or a previous convert output"):
        convert(synthetic_cohort / "manifest.tsv", tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "keep"
