"""The error boundary of every entry point (`r2tnet_hf.errors.expected_failure_line`): an expected failure (bad input,
I/O, decoding, memory, a library's file error) is one line with exit status 2 and nothing half-written; a bug keeps
its traceback. Disk-full and read-only failures are injected where the package writes (the tests run as root, for
whom permissions do not apply)."""

import errno
import json
import os
import tempfile

import pytest
import torch

from r2tnet_hf import R2TNetModel
from r2tnet_hf.cli import main
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from r2tnet_hf.errors import FmriInputError, expected_failure_line
from r2tnet_hf.training import main as training_main

from ..hub.conftest import tiny_config, tiny_processor


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    make_synthetic_cohort(root, subjects=6, sessions=2, rois=16, frames=60, seed=0)
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    R2TNetModel(tiny_config()).save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


def _one_line(capsys, command: str, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _fail_on(monkeypatch, module, name: str, code: int, path_from_args: bool = True):
    """Make `module.name` raise `OSError(code)` naming its first argument, as the kernel would."""

    def failing(*args, **kwargs):
        path = args[0] if args and path_from_args else kwargs.get("dir", "?")
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(module, name, failing)


@pytest.mark.parametrize(
    ("code", "found"),
    [(errno.ENOSPC, "no space left on the device (ENOSPC)"), (errno.EROFS, "a read-only file system (EROFS)")],
)
def test_convert_on_a_full_or_read_only_disk(cohort, tmp_path, monkeypatch, capsys, code, found):
    import r2tnet_hf.utils as utils

    _fail_on(monkeypatch, utils.os, "replace", code)
    out = tmp_path / "shards"
    assert main(["convert", str(cohort / "manifest.tsv"), "--out", str(out), "--quiet"]) == 2
    _one_line(capsys, "r2tnet convert", found)
    assert not list(tmp_path.rglob("*.parquet"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_signatures_and_synth_on_a_full_or_read_only_disk(cohort, model_dir, tmp_path, monkeypatch, capsys, code):
    import r2tnet_hf.utils as utils

    name = errno.errorcode[code]
    _fail_on(monkeypatch, utils.tempfile, "mkstemp", code, path_from_args=False)
    out = tmp_path / "sig.parquet"
    argv = ["signatures", "--model", str(model_dir), "--input", str(cohort / "manifest.tsv"), "--output", str(out)]
    assert main([*argv, "--quiet"]) == 2
    _one_line(capsys, "r2tnet signatures", f"({name})")
    assert not out.exists()
    monkeypatch.undo()
    _fail_on(monkeypatch, tempfile, "mkdtemp", code, path_from_args=False)
    assert main(["synth", "--subjects", "2", "--out", str(tmp_path / "synth")]) == 2
    _one_line(capsys, "r2tnet synth", f"({name})")
    assert not (tmp_path / "synth").exists()


def test_pretraining_on_a_full_disk_is_one_line_on_rank_0(cohort, tmp_path, monkeypatch, capsys):
    from r2tnet_hf.data.shards import convert

    convert(cohort / "manifest.tsv", tmp_path / "shards", progress=False)
    import r2tnet_hf.utils as utils

    _fail_on(monkeypatch, utils.os, "replace", errno.ENOSPC)
    argv = ["--data", str(tmp_path / "shards"), "--output_dir", str(tmp_path / "run"), "--max_steps", "2",
            "--progress", "false", "--subjects_per_batch", "2"]  # fmt: skip
    assert training_main("pretrain", argv) == 2
    _one_line(capsys, "pretrain", "no space left on the device (ENOSPC)")
    monkeypatch.setenv("RANK", "1")  # the other ranks of `accelerate launch` say nothing, and exit 2 too
    assert training_main("pretrain", [*argv[:2], "--output_dir", str(tmp_path / "run1"), *argv[4:]]) == 2
    assert "error" not in capsys.readouterr().err


def test_one_unusable_scan_is_skipped_and_the_good_rows_kept(cohort, model_dir, tmp_path, monkeypatch, capsys):
    """A MemoryError (or any expected failure) while reading one scan skips that scan only."""
    import r2tnet_hf.data.io as io

    real = io.read_table

    def read_table(path, *args, **kwargs):
        if "sub-002_ses-1_task-rest" in str(path):
            raise MemoryError("cannot allocate 160 GB")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(io, "read_table", read_table)
    out = tmp_path / "sig.parquet"
    argv = ["signatures", "--model", str(model_dir), "--input", str(cohort / "manifest.tsv"), "--output", str(out)]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "skipped" in err and "sub-002_ses-1_task-rest" in err and "MemoryError" in err and "Traceback" not in err
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 11  # 12 rest scans, one skipped


def test_a_bug_keeps_its_traceback(cohort, tmp_path, monkeypatch):
    """What is not an expected failure is not hidden: the exception reaches the caller (Python prints it)."""
    import r2tnet_hf.data.splits as splits

    def broken(*args, **kwargs):
        raise TypeError("a bug in the package")

    monkeypatch.setattr(splits, "make_splits", broken)
    with pytest.raises(TypeError, match="a bug in the package"):
        main(["split", str(cohort / "manifest.tsv"), "--out", str(tmp_path / "s.json")])
    import r2tnet_hf.training.loop as loop

    monkeypatch.setattr(loop, "run", lambda config, task: _raise(KeyError("a bug in the loop")))
    with pytest.raises(KeyError, match="a bug in the loop"):
        training_main("pretrain", ["--data", str(tmp_path / "x"), "--output_dir", str(tmp_path / "y")])


def _raise(error):
    raise error


@pytest.mark.parametrize(
    ("error", "needles"),
    [
        (FmriInputError("a.tsv: expected x, found y"), ["a.tsv: expected x, found y"]),
        (OSError(errno.ENOENT, "No such file or directory", "/data/x.nii"), ["/data/x.nii", "ENOENT"]),
        (OSError(errno.EACCES, "Permission denied", "/data/x.nii"), ["/data/x.nii", "permission denied (EACCES)"]),
        (json.JSONDecodeError("Expecting value", "{", 1), ["valid JSON", "line 1 column 2"]),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ["UTF-8 text", "0xff"]),
        (MemoryError(), ["fit in memory", "--batch-size"]),
    ],
)  # fmt: skip
def test_expected_failures_are_one_line(error, needles):
    line = expected_failure_line(error)
    assert line is not None and "\n" not in line
    for needle in needles:
        assert needle in line


@pytest.mark.parametrize(
    "error", [TypeError("x"), KeyError("x"), AttributeError("x"), ValueError("x"), AssertionError()]
)
def test_bugs_are_not_expected_failures(error):
    assert expected_failure_line(error) is None


def test_library_file_errors_are_recognised():
    import yaml
    from safetensors import SafetensorError

    with pytest.raises(yaml.YAMLError) as caught:
        yaml.safe_load("a: [1, 2")
    assert "valid YAML" in expected_failure_line(caught.value)
    assert "safetensors" in expected_failure_line(SafetensorError("header too large"))
    import pyarrow as pa

    assert "Parquet" in expected_failure_line(pa.lib.ArrowInvalid("Parquet magic bytes not found"))


def test_convert_skip_bad_skips_any_expected_failure_of_one_scan(cohort, tmp_path, monkeypatch, capsys):
    import json as json_module

    import r2tnet_hf.data.io as io

    real = io.read_table

    def read_table(path, *args, **kwargs):
        if "sub-003_ses-2_task-rest" in str(path):
            raise OSError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(io, "read_table", read_table)
    out = tmp_path / "shards"
    assert main(["convert", str(cohort / "manifest.tsv"), "--out", str(out), "--quiet"]) == 2
    _one_line(capsys, "r2tnet convert", "sub-003_ses-2_task-rest", "permission denied (EACCES)")
    assert not list(tmp_path.rglob("*.parquet"))
    assert main(["convert", str(cohort / "manifest.tsv"), "--out", str(out), "--skip-bad", "--quiet"]) == 0
    summary = json_module.loads((out / "manifest.json").read_text())
    assert summary["rows"] == 23 and "EACCES" in summary["skipped"][0]["reason"]
