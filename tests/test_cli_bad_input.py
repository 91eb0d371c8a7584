"""Every `r2tnet` subcommand (and the training scripts) on bad input: exit status 2, one line on stderr naming what
was expected and what was found, no traceback, and nothing written where the output would go.

Each case builds its bad input in `tmp_path` and names the substring its error line must hold. `predict` and
`signatures` also name each skipped scan on its own line before the error (they report per scan); for them the last
line is the error and every line names a file.
"""

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from r2tnet_hf import R2TNetForPhenotypePrediction
from r2tnet_hf.cli import build_parser, main
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from r2tnet_hf.training import main as training_main

from .hub.conftest import make_run, tiny_config, tiny_processor

MANIFEST_HEADER = "subject\tsession\tmodality\ttask\tpath\trepetition_time\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small good cohort, a tiny phenotype model (16 ROIs), and a run folder to publish."""
    root = tmp_path_factory.mktemp("world")
    make_synthetic_cohort(root / "cohort", subjects=6, sessions=2, rois=16, frames=60, seed=0, task=False)
    torch.manual_seed(0)
    model = R2TNetForPhenotypePrediction(tiny_config(num_labels=1, problem_type="regression"))
    model.save_pretrained(root / "model")
    tiny_processor().save_pretrained(root / "model")
    make_run(root / "run")
    return root


def _table(path: Path, rows: int = 60, cols: int = 16, nan_at: int | None = None) -> Path:
    values = np.random.default_rng(0).standard_normal((rows, cols))
    if nan_at is not None:
        values[nan_at, 0] = np.nan
    header = "\t".join(f"roi_{i:03d}" for i in range(cols))
    path.write_text(header + "\n" + "\n".join("\t".join(f"{v:.4f}" for v in row) for row in values) + "\n")
    return path


def _manifest(path: Path, scan: Path, tr: str = "0.8", cohort: Path | None = None) -> Path:
    """A manifest of `scan` alone or, with `cohort`, of the cohort's scans with `scan` in place of the last one (so
    that the others set what is expected and `scan` is still read)."""
    rows, last = [], "sub-001\tses-1"
    if cohort is not None:
        lines = (cohort / "manifest.tsv").read_text().splitlines()[1:]
        rows = ["\t".join([*c[:4], str(cohort / c[4]), c[5]]) for c in (line.split("\t") for line in lines[:-1])]
        last = "\t".join(lines[-1].split("\t")[:2])
    rows.append(f"{last}\trest\trest\t{scan}\t{tr}")
    path.write_text(MANIFEST_HEADER + "\n".join(rows) + "\n")
    return path


def _bad(tmp: Path, kind: str) -> Path:
    """One bad scan file of `kind`."""
    if kind == "nan":
        return _table(tmp / "nan.tsv", nan_at=5)
    if kind == "wrong_shape":
        return _table(tmp / "five_rois.tsv", cols=5)
    if kind == "empty":
        (tmp / "empty.tsv").write_text("")
        return tmp / "empty.tsv"
    if kind == "wrong_type":
        (tmp / "scan.mat").write_bytes(b"MATLAB 5.0")
        return tmp / "scan.mat"
    if kind == "corrupt":
        (tmp / "corrupt.nii.gz").write_bytes(gzip.compress(b"\0" * 1000)[:40])
        return tmp / "corrupt.nii.gz"
    if kind == "volume_without_atlas":
        path = tmp / "sub-x_task-rest_bold.nii.gz"
        image = nib.Nifti1Image(np.random.default_rng(0).standard_normal((3, 3, 3, 60)).astype(np.float32), np.eye(4))
        image.header["pixdim"][4] = 2.0
        image.to_filename(path)
        return path
    raise ValueError(kind)


SCAN_KINDS = ("nan", "wrong_shape", "empty", "wrong_type", "corrupt", "volume_without_atlas")
SCAN_EXPECTED = {
    "nan": "expected finite values",
    "wrong_shape": "expected 16 ROIs",
    "empty": "found an empty file",
    "wrong_type": "unknown file type",
    "corrupt": "expected",
    "volume_without_atlas": "--atlas FILE",
}


def _cases(world: Path, tmp: Path) -> list[tuple[str, list[str], str, Path | None]]:
    """(command, argv, substring of the error line, output path that must not appear)."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "out"
    cohort_manifest = str(world / "cohort" / "manifest.tsv")
    model = str(world / "model")
    cases = []
    for kind in SCAN_KINDS:
        scan = _bad(tmp, kind)
        tr = "2.0" if kind == "volume_without_atlas" else "0.8"
        manifest = str(_manifest(tmp / f"manifest_{kind}.tsv", scan, tr, cohort=world / "cohort"))
        alone = str(_manifest(tmp / f"alone_{kind}.tsv", scan, tr))  # predict/signatures keep good rows: none here
        if kind != "volume_without_atlas":  # volumes are valid shards: only ROI models need the atlas
            cases.append(("convert", ["convert", manifest, "--out", str(out), "--quiet"], SCAN_EXPECTED[kind], out))
        cases += [
            ("fingerprint", ["fingerprint", "--model", model, "--manifest", manifest, "--output", str(out),
                             "--quiet"], SCAN_EXPECTED[kind], out),
            ("predict", ["predict", "--model", model, "--input", alone, "--output", str(out), "--quiet"],
             SCAN_EXPECTED[kind], out),
            ("signatures", ["signatures", "--model", model, "--input", alone, "--output", str(out), "--quiet"],
             SCAN_EXPECTED[kind], out),
        ]  # fmt: skip
    no_tr = str(_manifest(tmp / "no_tr.tsv", _table(tmp / "no_tr_scan.tsv"), tr=""))  # the scan alone
    empty_dir = tmp / "empty_dir"
    empty_dir.mkdir()
    (tmp / "notes.txt").write_text("not a manifest")
    (tmp / "empty.ckpt").write_bytes(b"")
    (tmp / "text.ckpt").write_text("not a checkpoint")
    foreign = tmp / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("someone's file")
    cases += [
        ("manifest", ["manifest", str(tmp / "missing"), "--out", str(out / "m.tsv")], "no such folder", out),
        ("manifest", ["manifest", str(empty_dir), "--out", str(out / "m.tsv")], "found none", out),
        ("convert", ["convert", no_tr, "--out", str(out), "--quiet"], "repetition time", out),
        ("convert", ["convert", str(tmp / "notes.txt"), "--out", str(out)], "a .tsv or .csv manifest", out),
        ("convert", ["convert", str(tmp / "missing.tsv"), "--out", str(out)], "no such file", out),
        ("convert", ["convert", cohort_manifest, "--out", str(out), "--atlas", str(tmp / "empty.tsv")],
         "expected an atlas file", out),
        ("verify", ["verify", str(empty_dir), "--quiet"], "no manifest.json", None),
        ("verify", ["verify", str(tmp / "notes.txt"), "--quiet"], "manifest.json", None),
        ("split", ["split", str(tmp / "missing.tsv"), "--out", str(out)], "no such file", out),
        ("split", ["split", cohort_manifest, "--out", str(out), "--fractions", "0.5", "0.5", "0.5"],
         "--fractions", out),
        ("synth", ["synth", "--subjects", "2", "--out", str(foreign)], "a new folder", None),
        ("synth", ["synth", "--subjects", "0", "--out", str(out)], "subjects >= 1", out),
        ("synth", ["synth", "--subjects", "2", "--tr", "800", "--out", str(out)], "looks like milliseconds", out),
        ("fingerprint", ["fingerprint", "--model", str(tmp / "missing"), "--manifest", cohort_manifest,
                         "--output", str(out)], "config.json", out),
        ("fingerprint", ["fingerprint", "--model", model, "--manifest", cohort_manifest, "--output", str(out),
                         "--splits", str(tmp / "notes.txt")], "notes.txt", out),
        ("predict", ["predict", "--model", str(tmp / "missing"), "--input", cohort_manifest, "--output",
                     str(out)], "missing", out),
        ("predict", ["predict", "--model", model, "--input", str(empty_dir), "--output", str(out)], "found none",
         out),
        ("signatures", ["signatures", "--model", model, "--input", cohort_manifest, "--output", str(out),
                        "--batch-size", "0"], "--batch-size", out),
        ("signatures", ["signatures", "--model", model, "--input", cohort_manifest, "--output", str(out),
                        "--atlas", str(tmp / "missing.nii.gz")], "missing.nii.gz", out),
        ("publish", ["publish", str(empty_dir), "--repo-id", "x/y", "--dry-run", str(out)], "eval_results.json",
         out),
        ("publish", ["publish", str(world / "run"), "--repo-id", "x/y", "--dry-run", str(foreign)],
         "a new folder", None),
        ("demo", ["demo", "--output", str(out), "--data-dir", str(tmp / "missing"), "--quick", "--quiet"],
         "no such folder", out),
        ("import-weights", ["import-weights", "--from", "mnemodyn", str(tmp / "missing.ckpt"), "--out", str(out)],
         "missing.ckpt", out),
        ("import-weights", ["import-weights", "--from", "swift", str(tmp / "empty.ckpt"), "--out", str(out)],
         "empty", out),
        ("import-weights", ["import-weights", "--from", "mnemodyn", str(tmp / "text.ckpt"), "--out", str(out)],
         "text.ckpt", out),
        ("import-weights", ["import-weights", "--from", "mnemodyn", str(tmp / "text.ckpt"), "--out", str(out),
                            "--set", "novalue"], "KEY=VALUE", out),
        ("convert", ["convert", "--out", str(out)], "required", out),  # argparse: one line too
        ("predict", ["predict", "--model", model], "required", out),
    ]  # fmt: skip
    return cases


def _status(run, *args) -> int:
    """The exit status, whether the command returns it or argparse exits with it."""
    try:
        return run(*args)
    except SystemExit as exited:
        return exited.code


def test_every_subcommand_has_bad_input_cases(world, tmp_path):
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    covered = {command for command, *_ in _cases(world, tmp_path)}
    assert commands <= covered, f"no bad-input case for {sorted(commands - covered)}"


def test_bad_input_is_one_line_exit_2_and_nothing_written(world, tmp_path, capsys):
    failures = []
    for index, (command, argv, expected, output) in enumerate(_cases(world, tmp_path / "cases")):
        case = f"{index}: r2tnet {' '.join(argv)}"
        status = _status(main, argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        per_scan = command in ("predict", "signatures")
        if status != 2:
            failures.append(f"{case}: exit {status}, stderr {err!r}")
        elif "Traceback" in err or not lines or (len(lines) != 1 and not per_scan):
            failures.append(f"{case}: not one line: {err!r}")
        elif not lines[-1].startswith(f"r2tnet {command}: error: ") or expected not in (err if per_scan else lines[-1]):
            failures.append(f"{case}: last line {lines[-1]!r} lacks {expected!r}")
        elif output is not None and output.exists():
            failures.append(f"{case}: wrote {output}")
        if output is not None and output.exists():  # the next case starts clean
            shutil.rmtree(output) if output.is_dir() else output.unlink()
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--data", "{tmp}/missing", "--output_dir", "{tmp}/run"], "manifest.json"),
        (["--data", "{tmp}/shards", "--output_dir", "{tmp}/run", "--subjects_per_batch", "1"], "--subjects_per_batch"),
        (["--data", "{tmp}/shards", "--output_dir", "{tmp}/run"], "--positives cross_session"),
        (["--config", "{tmp}/missing.yaml"], "missing.yaml"),
        (["--bogus_flag", "1"], "unrecognized arguments"),
    ],
)
def test_training_scripts_bad_input_is_one_line_exit_2(world, tmp_path, argv, expected, capsys):
    from r2tnet_hf.data.shards import convert

    convert(world / "cohort" / "manifest.tsv", tmp_path / "shards", progress=False)  # rest only
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    status = _status(training_main, "pretrain", argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "have no" not in line]
    assert status == 2 and "Traceback" not in err
    assert len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "run" / "best").exists()
