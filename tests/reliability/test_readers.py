"""Bad input to the file readers ends in one line naming the file, never a shifted frame, a traceback or a MemoryError.

Each case runs as a user meets it: `r2tnet convert`, `r2tnet manifest`, `r2tnet signatures` (through
`r2tnet_hf.cli.main`) or `FmriProcessor`. The contract asserted: exit status 2, one line on stderr naming the file
with what was expected and what was found, no traceback, no numpy/torch warning before it, no partial output, and
good rows kept.
"""

import gzip
import json
import multiprocessing
import pickle
import signal
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from r2tnet_hf import FmriInputError, FmriProcessor, R2TNetModel
from r2tnet_hf.cli import main
from r2tnet_hf.data import io as readers
from r2tnet_hf.data.io import read_series
from r2tnet_hf.data.manifest import read_manifest
from r2tnet_hf.data.shards import ConvertOptions, convert
from r2tnet_hf.data.streaming import ShardFolder, decode_array
from r2tnet_hf.data.synthetic import make_synthetic_cohort

from ..data.conftest import synthetic_cohort  # noqa: F401  (fixture)
from ..data.test_shards import _convert_and_die
from ..hub.conftest import tiny_config, tiny_processor

ROIS, FRAMES = 6, 40
COLUMNS = "subject\tsession\tmodality\ttask\tpath\trepetition_time"


def series(seed: int = 0) -> np.ndarray:
    """(T, V) values, time-major as the tables hold them."""
    return np.random.default_rng(seed).standard_normal((FRAMES, ROIS)).round(4)


def write_table(path: Path, values: np.ndarray, header: list[str] | None = None, encoding: str = "utf-8") -> Path:
    delimiter = "," if path.suffix == ".csv" else "\t"
    lines = [delimiter.join(header)] if header is not None else []
    lines += [delimiter.join(f"{v:.4f}" for v in row) for row in values]
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def write_manifest(folder: Path, rows: list[tuple[str, str]], extra_columns: str = "") -> Path:
    """`rows`: (file name, repetition_time cell, [extra cells]) for subjects s0, s1, ..."""
    lines = [COLUMNS + extra_columns]
    for index, (name, tr, *extra) in enumerate(rows):
        lines.append("\t".join([f"s{index}", "1", "rest", "rest", name, tr, *extra]))
    path = folder / "manifest.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(argv, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit:  # a usage error (argparse): one line, status 2
            code = exit.code
    out, err = capsys.readouterr()
    runtime = [str(w.message) for w in caught if issubclass(w.category, (RuntimeWarning, UserWarning))]
    return code, out, err, runtime


def assert_refused(result, source, *fragments):
    code, _, err, runtime = result
    assert code == 2, err
    assert "Traceback" not in err and not runtime, (err, runtime)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(source) in lines[0] and "expected" in lines[0] and "found" in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def converted(out: Path) -> list[np.ndarray]:
    folder = ShardFolder(out)
    rows = sorted((folder.read_row(i) for i in range(len(folder))), key=lambda row: row["scan_index"])
    return [decode_array(row) for row in rows]


# ------------------------------------------------------------------ 1. headers that cannot shift frames
def test_pandas_numeric_header_is_a_header_not_frame_zero(tmp_path, capsys):
    import pandas as pd

    values = series()
    pd.DataFrame(values).to_csv(tmp_path / "pandas.csv", index=False)  # header row "0,1,2,3,4,5"
    pd.DataFrame(values, columns=range(1, ROIS + 1)).to_csv(tmp_path / "one_based.csv", index=False)
    write_table(tmp_path / "plain.csv", values)
    manifest = write_manifest(tmp_path, [("pandas.csv", "0.8"), ("one_based.csv", "0.8"), ("plain.csv", "0.8")])
    code, _, err, _ = run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 0, err
    pandas_rows, one_based, plain = converted(tmp_path / "out")
    assert pandas_rows.shape == plain.shape == one_based.shape == (ROIS, FRAMES)
    np.testing.assert_array_equal(pandas_rows, plain)
    np.testing.assert_array_equal(one_based, plain)
    assert read_series(tmp_path / "pandas.csv").roi_labels is None  # column numbers are not ROI names
    assert readers.count_frames(tmp_path / "pandas.csv") == FRAMES


def test_byte_order_mark_keeps_frame_zero_and_clean_names(tmp_path, capsys):
    values = series()
    write_table(tmp_path / "bom.tsv", values, encoding="utf-8-sig")
    write_table(tmp_path / "plain.tsv", values)
    names = [f"roi_{i:03d}" for i in range(ROIS)]
    write_table(tmp_path / "bom_named.tsv", values, names, encoding="utf-8-sig")
    manifest = write_manifest(tmp_path, [("bom.tsv", "0.8"), ("plain.tsv", "0.8")])
    assert run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys)[0] == 0
    bom, plain = converted(tmp_path / "out")
    assert bom.shape == (ROIS, FRAMES)
    np.testing.assert_array_equal(bom, plain)
    assert read_series(tmp_path / "bom_named.tsv").roi_labels == names  # no '\ufeffroi_000'
    # A mismatch message names ROIs without the mark.
    processor = FmriProcessor(num_rois=ROIS, roi_labels=[f"x{i}" for i in range(ROIS)])
    with pytest.raises(FmriInputError, match=r"first difference at ROI 0: 'roi_000' where 'x0'"):
        processor(str(tmp_path / "bom_named.tsv"), repetition_time=0.8)


def test_ambiguous_integer_first_row_is_refused_naming_the_header_option(tmp_path, capsys):
    keys = ["2001", "2002", "4011", "4012", "5001", "5002"]  # atlas keys, or a frame? (the data are not integers)
    write_table(tmp_path / "keys.tsv", series(), keys)
    manifest = write_manifest(tmp_path, [("keys.tsv", "0.8")])
    line = assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys),
        tmp_path / "keys.tsv",
        "a first row of integers (2001, 2002, 4011, 4012, ...)",
        "--header yes or --header no",
    )
    assert "\n" not in line and not (tmp_path / "out").exists()
    assert run(["convert", manifest, "--out", tmp_path / "yes", "--header", "yes", "--quiet"], capsys)[0] == 0
    assert converted(tmp_path / "yes")[0].shape == (ROIS, FRAMES)
    assert FmriProcessor.from_pretrained(tmp_path / "yes").roi_labels == keys
    assert run(["convert", manifest, "--out", tmp_path / "no", "--header", "no", "--quiet"], capsys)[0] == 0
    assert converted(tmp_path / "no")[0].shape == (ROIS, FRAMES + 1)
    # Integer data under an integer first row is data (nothing is ambiguous); the processor takes header= per call.
    integers = np.arange(FRAMES * ROIS).reshape(FRAMES, ROIS) % 7 + 3  # first row 3 4 5 6 7 8
    path = tmp_path / "counts.tsv"
    path.write_text("\n".join("\t".join(str(v) for v in row) for row in integers) + "\n")
    assert read_series(path).num_timepoints == FRAMES
    assert read_series(path, header="yes").num_timepoints == FRAMES - 1
    assert FmriProcessor(min_length=4).prepare(str(path), 0.8, header="yes").num_timepoints == FRAMES - 1
    assert "header" not in FmriProcessor().to_dict()  # a property of the files, not of the model


def test_header_option_is_checked(tmp_path):
    write_table(tmp_path / "a.tsv", series())
    with pytest.raises(FmriInputError, match=r"header: expected one of auto, yes, no, found 'maybe'"):
        read_series(tmp_path / "a.tsv", header="maybe")


def test_manifest_reports_num_frames_and_convert_catches_a_shifted_header(tmp_path, capsys):
    import pandas as pd

    func = tmp_path / "bids" / "sub-01" / "func"
    func.mkdir(parents=True)
    pd.DataFrame(series()).to_csv(func / "sub-01_task-rest_timeseries.csv", index=False)
    sub2 = tmp_path / "bids" / "sub-02" / "func"
    sub2.mkdir(parents=True)
    np.save(sub2 / "sub-02_task-rest_timeseries.npy", series(1)[:30].astype(np.float32))
    sub3 = tmp_path / "bids" / "sub-03" / "func"
    sub3.mkdir(parents=True)
    write_table(sub3 / "sub-03_task-rest_timeseries.tsv", series(2)[:35])
    manifest = tmp_path / "manifest.tsv"
    code, _, err, _ = run(
        ["manifest", tmp_path / "bids", "--out", manifest, "--kind", "roi", "--repetition-time", "0.8"], capsys
    )
    assert code == 0, err
    header = manifest.read_text().splitlines()[0].split("\t")
    assert header[:7] == ["subject", "session", "modality", "task", "path", "repetition_time", "num_frames"]
    records = read_manifest(manifest)
    assert [r.num_frames for r in records.records] == [FRAMES, 30, 35]
    assert "num_frames" not in records.phenotype_columns

    # Read with --header no, the pandas file would gain a frame: the manifest's count refuses it, naming the file.
    bad = func / "sub-01_task-rest_timeseries.csv"
    assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--header", "no", "--quiet"], capsys),
        bad,
        f"expected {FRAMES} frames (the manifest's num_frames), found {FRAMES + 1} frames",
    )
    assert not (tmp_path / "out").exists()
    code, _, err, _ = run(["convert", manifest, "--out", tmp_path / "out", "--header", "no", "--skip-bad"], capsys)
    assert code == 0 and "skipped" in err and str(bad.relative_to(tmp_path)) in err
    assert [a.shape[1] for a in converted(tmp_path / "out")] == [30, 35]  # good rows kept


def test_bad_num_frames_cell_is_one_line(tmp_path, capsys):
    write_table(tmp_path / "a.tsv", series())
    manifest = write_manifest(tmp_path, [("a.tsv", "0.8", "forty")], "\tnum_frames")
    assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys),
        f"{manifest} row 2",
        "num_frames, a whole number of frames >= 1",
        "'forty'",
    )


# ------------------------------------------------------------------ 2. the size a header claims, checked first
def huge_npy(path: Path, shape=(1_000_000, 40_000)) -> Path:
    """A 200-byte .npy whose header claims 160 GB of float32."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 64)
    return path


def huge_nifti(path: Path) -> Path:
    """A tiny NIfTI-1 whose header claims (2000, 2000, 2000, 1000) float32: 32 TB."""
    image = nib.Nifti1Image(np.zeros((2, 2, 2, 2), dtype=np.float32), np.eye(4))
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 0.8
    raw = bytearray(image.header.binaryblock) + b"\0" * 4 + np.zeros(16, np.float32).tobytes()
    struct.pack_into("<8h", raw, 40, 4, 2000, 2000, 2000, 1000, 1, 1, 1)
    data = gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    R2TNetModel(tiny_config()).save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


def test_signatures_skip_a_scan_whose_header_claims_terabytes_and_keep_the_good_rows(tmp_path, encoder, capsys):
    root = tmp_path / "scans"
    make_synthetic_cohort(root, subjects=2, sessions=1, rois=16, frames=60, repetition_time=0.8, task=False, seed=1)
    huge = [huge_npy(root / "huge.npy"), huge_nifti(root / "huge.nii"), huge_nifti(root / "huge.nii.gz")]
    output = tmp_path / "sig.parquet"
    code, _, err, runtime = run(
        ["signatures", "--model", encoder, "--input", root, "--output", output, "--repetition-time", "0.8", "--quiet"],
        capsys,
    )
    assert code == 2 and "Traceback" not in err and not runtime
    assert pq.read_table(output).num_rows == 2  # the good scans
    skipped = [line for line in err.splitlines() if "skipped" in line and "huge" in line]
    assert len(skipped) == 3
    for path, claimed in zip(huge, ("149 GiB", "2.98e+04 GiB", "2.98e+04 GiB")):
        (line,) = [line for line in skipped if f"skipped {path}:" in line]
        assert "expected a scan of at most 16 GiB in memory" in line and claimed in line, line
        assert "R2TNET_MAX_SCAN_GB" in line
    assert (tmp_path / "sig.parquet.skipped.tsv").read_text().count("\n") == 4


def test_scan_size_limit_is_an_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "small.npy"
    np.save(path, series().astype(np.float32))
    monkeypatch.setenv("R2TNET_MAX_SCAN_GB", "1e-7")  # ~107 bytes
    with pytest.raises(FmriInputError, match=r"small\.npy: expected a scan of at most 1e-07 GiB in memory"):
        read_series(path)
    monkeypatch.setenv("R2TNET_MAX_SCAN_GB", "lots")
    with pytest.raises(FmriInputError, match=r"R2TNET_MAX_SCAN_GB: expected a size in GiB > 0, found 'lots'"):
        read_series(path)
    monkeypatch.delenv("R2TNET_MAX_SCAN_GB")
    assert read_series(path).data.shape == (ROIS, FRAMES)


def test_truncated_npy_and_nifti_are_refused_before_reading(tmp_path):
    path = huge_npy(tmp_path / "short.npy", shape=(100, 16))
    with pytest.raises(FmriInputError, match=r"short\.npy: expected 6400 bytes of data .*, found 64 bytes"):
        read_series(path)
    nifti = tmp_path / "short.nii"
    nib.Nifti1Image(np.zeros((4, 4, 4, 8), dtype=np.float32), np.eye(4)).to_filename(nifti)
    nifti.write_bytes(nifti.read_bytes()[:-100])
    with pytest.raises(FmriInputError, match=r"short\.nii: expected 2048 bytes of data .*truncated"):
        read_series(nifti)


# ------------------------------------------------------------------ 3. one TR rule everywhere
def test_manifest_tr_in_milliseconds_is_refused_with_the_fix(tmp_path, capsys):
    write_table(tmp_path / "a.tsv", series())
    manifest = write_manifest(tmp_path, [("a.tsv", "800")])
    assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys),
        f"{manifest} row 2",
        "repetition_time in seconds between 0.05 and 30, found 800 (800 looks like milliseconds: write 0.8)",
    )
    write_manifest(tmp_path, [("a.tsv", "abc")])
    assert_refused(run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys), "row 2", "'abc'")


def test_tr_flags_follow_the_rule(tmp_path, capsys, encoder):
    write_table(tmp_path / "a.tsv", series())
    manifest = write_manifest(tmp_path, [("a.tsv", "0.8")])
    code, _, err, _ = run(["convert", manifest, "--out", tmp_path / "out", "--target-tr", "720"], capsys)
    assert code == 2 and "720 looks like milliseconds: write 0.72" in err and len(err.strip().splitlines()) == 1
    code, _, err, _ = run(
        ["signatures", "--model", encoder, "--input", tmp_path, "--output", tmp_path / "s.parquet",
         "--repetition-time", "2000"], capsys,
    )  # fmt: skip
    assert code == 2 and "2000 looks like milliseconds: write 2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.parquet").exists()


def test_processor_tr_follows_the_rule():
    values = series().T
    with pytest.raises(FmriInputError, match=r"<array>: expected repetition_time as passed in seconds \(a number\), "):
        FmriProcessor(min_length=4)(values, repetition_time="abc")
    with pytest.raises(FmriInputError, match=r"found 800 \(800 looks like milliseconds: write 0.8\)"):
        FmriProcessor(min_length=4)(values, repetition_time=800)
    with pytest.raises(FmriInputError, match=r"target_repetition_time: expected .* found 1000 \(1000 looks like"):
        FmriProcessor(target_repetition_time=1000)
    assert FmriProcessor(min_length=4)(values, repetition_time="0.8")["repetition_time"].tolist() == [
        pytest.approx(0.8)
    ]


def nifti_with_tr(path: Path, zoom: float, unit: str) -> Path:
    data = np.random.default_rng(0).standard_normal((3, 3, 3, 20)).astype(np.float32)
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_xyzt_units("mm", unit)
    image.header.set_zooms((1.0, 1.0, 1.0, zoom))
    image.to_filename(path)
    return path


def test_nifti_header_tr_in_milliseconds_marked_sec_is_refused_unless_a_tr_is_given(tmp_path, capsys):
    bad = nifti_with_tr(tmp_path / "ms_as_sec.nii.gz", 2000.0, "sec")
    nifti_with_tr(tmp_path / "msec.nii.gz", 800.0, "msec")
    manifest = write_manifest(tmp_path, [("ms_as_sec.nii.gz", ""), ("msec.nii.gz", "")])
    assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--min-length", "4", "--quiet"], capsys),
        bad,
        "a header TR (pixdim[4] 2000, unit 'sec') between 0.05 and 30 s, found 2000 (2000 looks like milliseconds",
        "is used instead of the header",
    )
    write_manifest(tmp_path, [("ms_as_sec.nii.gz", "2.0"), ("msec.nii.gz", "")])  # the manifest's TR wins
    code, _, err, _ = run(["convert", manifest, "--out", tmp_path / "out", "--min-length", "4", "--quiet"], capsys)
    assert code == 0, err
    assert [row["repetition_time"] for row in map(ShardFolder(tmp_path / "out").read_row, (0, 1))] == [
        pytest.approx(2.0),
        pytest.approx(0.8),  # 'msec' is converted as before
    ]


def test_sidecar_tr_follows_the_rule(tmp_path, capsys):
    func = tmp_path / "bids" / "sub-01" / "func"
    func.mkdir(parents=True)
    write_table(func / "sub-01_task-rest_timeseries.tsv", series())
    sidecar = func / "sub-01_task-rest_timeseries.json"
    for value, fragment in ((800, "800 looks like milliseconds: write 0.8"), ("abc", "found 'abc'")):
        sidecar.write_text(json.dumps({"RepetitionTime": value}))
        assert_refused(
            run(["manifest", tmp_path / "bids", "--out", tmp_path / "m.tsv", "--kind", "roi"], capsys),
            sidecar,
            "RepetitionTime in seconds",
            fragment,
        )
        assert not (tmp_path / "m.tsv").exists()


# ------------------------------------------------------------------ 4. decoding
def test_non_utf8_manifest_is_one_line(tmp_path, capsys):
    write_table(tmp_path / "a.tsv", series())
    manifest = tmp_path / "manifest.tsv"
    manifest.write_bytes((COLUMNS + "\tsite\ns0\t1\trest\trest\ta.tsv\t0.8\tGöttingen\n").encode("latin-1"))
    assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys),
        manifest,
        "expected a manifest in UTF-8, found bytes that are not UTF-8 (0xf6 at byte",
        "save the file as UTF-8",
    )
    manifest.write_text(COLUMNS + "\ns0\t1\trest\trest\ta.tsv\t0.8\n", encoding="utf-8-sig")  # Excel's BOM
    assert run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys)[0] == 0


def test_non_utf8_scan_is_one_line_and_skipped_with_skip_bad(tmp_path, capsys):
    write_table(tmp_path / "good.tsv", series())
    bad = write_table(tmp_path / "bad.tsv", series(1), [f"Précuneus_{i}" for i in range(ROIS)], encoding="latin-1")
    manifest = write_manifest(tmp_path, [("good.tsv", "0.8"), ("bad.tsv", "0.8")])
    assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys),
        bad,
        "expected a text table in UTF-8, found bytes that are not UTF-8",
    )
    code, _, err, _ = run(["convert", manifest, "--out", tmp_path / "out", "--skip-bad", "--quiet"], capsys)
    assert code == 0 and "skipped bad.tsv" in err and len(converted(tmp_path / "out")) == 1


# ------------------------------------------------------------------ 5. no warnings before the line; complete messages
def test_values_beyond_float32_are_refused_without_a_numpy_warning(tmp_path, capsys):
    values = np.tile([3.4e38, 3.4e38, -3.4e38], (ROIS, 14)).T[:FRAMES]
    write_table(tmp_path / "huge_values.tsv", values)
    path = tmp_path / "overflow.tsv"
    path.write_text("\n".join("\t".join(["1e39"] * ROIS) for _ in range(FRAMES)) + "\n")
    manifest = write_manifest(tmp_path, [("huge_values.tsv", "0.8")])
    assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys),
        tmp_path / "huge_values.tsv",
        "non-finite values after resampling or z-scoring",
    )
    write_manifest(tmp_path, [("overflow.tsv", "0.8")])
    assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--quiet"], capsys), path, "expected finite values"
    )


def test_raw_pickle_frame_gives_a_complete_one_line_reason(tmp_path, capsys):
    folder = tmp_path / "img" / "sub-01"
    folder.mkdir(parents=True)
    torch.save(torch.zeros(1, 2, 2, 2), folder / "frame_0.pt")
    with open(folder / "frame_1.pt", "wb") as handle:
        pickle.dump({"volume": [0.0] * 8}, handle, protocol=4)
    manifest = write_manifest(tmp_path, [("img/sub-01", "0.8")])
    line = assert_refused(
        run(["convert", manifest, "--out", tmp_path / "out", "--min-length", "2", "--quiet"], capsys),
        folder / "frame_1.pt",
        "expected a tensor saved with torch.save that loads with weights_only=True, found a pickle that needs more "
        "than tensors to load (Unsupported operand 149)",
    )
    assert line.endswith(")") and "Check the documentation" not in line


def test_orphaned_temporaries_of_a_killed_convert_are_removed(synthetic_cohort, tmp_path):  # noqa: F811
    manifest = synthetic_cohort / "manifest.tsv"
    options = ConvertOptions(shard_size_mb=0.02)
    reference = convert(manifest, tmp_path / "reference", options, progress=False)
    out = tmp_path / "killed"
    child = multiprocessing.get_context("fork").Process(target=_convert_and_die, args=(manifest, out, 1))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    # What a kill in the middle of a write leaves (atomic_path's temporaries).
    orphans = [out / ".shard-00001.parquet.k1ll3d.tmp", out / ".convert-state" / ".journal.json.k1ll3d.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a file")
    resumed = convert(manifest, out, options, progress=False)
    assert not any(orphan.exists() for orphan in orphans)
    assert [s["sha256"] for s in resumed.shards] == [s["sha256"] for s in reference.shards]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "reference").iterdir())
    (out / ".README.md.x.tmp").write_text("left by a kill")
    assert convert(manifest, out, options, progress=False).up_to_date and not (out / ".README.md.x.tmp").exists()
