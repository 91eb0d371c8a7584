"""Shard integrity, exact resume and checked model loading, through the entry points a user runs.

Every tampered input below ends as the error contract says: exit status 2, one line on stderr naming the file with
what was expected and what was found, no traceback, no half-written output.
"""

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r2tnet_hf import FmriInputError
from r2tnet_hf.cli import main as cli
from r2tnet_hf.data.shards import ConvertOptions, convert
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from r2tnet_hf.training import main as train
from tests.training.conftest import TINY


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """8 subjects × 2 sessions × (rest, task), 12 ROIs × 64 frames, in 6 shards; and a 2-step pretraining run on them
    with a checkpoint after each step."""
    folder = tmp_path_factory.mktemp("reliability")
    make_synthetic_cohort(folder / "cohort", subjects=8, sessions=2, rois=12, frames=64, seed=1)
    convert(folder / "cohort" / "manifest.tsv", folder / "shards", ConvertOptions(shard_size_mb=0.015), progress=False)
    run = folder / "run"
    assert train("pretrain", [*common(folder / "shards", 2), "--output_dir", str(run)]) == 0
    return folder


def common(shards, steps):
    return ["--data", str(shards), "--max_steps", str(steps), "--eval_steps", "2", "--save_steps", "1", *TINY]


@pytest.fixture
def shards(pristine, tmp_path):
    shutil.copytree(pristine / "shards", tmp_path / "shards")
    return tmp_path / "shards"


@pytest.fixture
def run(pristine, tmp_path):
    shutil.copytree(pristine / "run", tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def model(pristine, tmp_path):
    shutil.copytree(pristine / "run" / "best", tmp_path / "model")
    return tmp_path / "model"


def one_line(capsys, *needles):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def pretrain_fails(shards, tmp_path, capsys, *needles, extra=()):
    output = tmp_path / "out"
    assert train("pretrain", [*common(shards, 1), "--output_dir", str(output), *extra]) == 2
    line = one_line(capsys, *needles)
    assert not (output / "checkpoints").exists() and not (output / "best").exists()
    return line


def set_manifest(shards, edit):
    path = shards / "manifest.json"
    summary = json.loads(path.read_text())
    edit(summary)
    path.write_text(json.dumps(summary))


# ------------------------------------------------------------------------------------------------------ shards
def test_a_truncated_shard_is_one_line_with_expected_and_found_bytes(shards, tmp_path, capsys):
    shard = shards / "shard-00002.parquet"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size // 2])
    line = pretrain_fails(
        shards, tmp_path, capsys, "shard-00002.parquet", f"expected {size} bytes", "rerun r2tnet convert"
    )
    assert f"found {size // 2} bytes" in line


def test_a_deleted_shard_is_one_line(shards, tmp_path, capsys):
    (shards / "shard-00004.parquet").unlink()
    pretrain_fails(
        shards, tmp_path, capsys, "shard-00004.parquet", "expected the shard listed in manifest.json", "no such file"
    )


def test_a_folder_written_before_bytes_were_recorded_checks_the_parquet_footer(shards, tmp_path, capsys):
    set_manifest(shards, lambda s: [shard.pop("bytes") for shard in s["shards"]])
    shard = shards / "shard-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    pretrain_fails(shards, tmp_path, capsys, "shard-00001.parquet", "expected a Parquet file with a readable footer")


def test_a_wrong_row_count_in_the_manifest_is_one_line(shards, tmp_path, capsys):
    set_manifest(shards, lambda s: s["shards"][3].update(rows=s["shards"][3]["rows"] + 1))
    rows = json.loads((shards / "manifest.json").read_text())["shards"][3]["rows"]
    pretrain_fails(shards, tmp_path, capsys, "shard-00003.parquet", f"expected {rows} rows", f"found {rows - 1} rows")


@pytest.mark.parametrize(
    "content, found",
    [
        (b'{"format": "r2tnet-shards/1", "shards": [', "invalid JSON"),
        (b"", "an empty file"),
        (b'{"format": "r2tnet-shards/1", "shards": []}\xff\xfe', "non-UTF-8 bytes"),
        (b"[1, 2]", "a JSON list"),
        (b'{"format": "r2tnet-shards/1"}', "expected a non-empty list of shards"),
        (b'{"format": "r2tnet-shards/1", "shards": [{"file": "shard-00000.parquet", "rows": 6}]}', "sha256 None"),
        (b'{"format": "r2tnet-shards/1", "shards": [{"file": "../x.parquet", "rows": 6, "sha256": "0"}]}', "file"),
    ],
)
def test_a_corrupt_manifest_json_is_one_line(shards, tmp_path, capsys, content, found):
    (shards / "manifest.json").write_bytes(content)
    pretrain_fails(shards, tmp_path, capsys, "manifest.json: expected", found)


def test_a_corrupt_shard_processor_config_is_one_line(shards, tmp_path, capsys):
    (shards / "preprocessor_config.json").write_text('{"num_rois": "twelve"}')
    pretrain_fails(shards, tmp_path, capsys, "preprocessor_config.json: expected num_rois as", "'twelve'")


def flip_a_byte(shard: Path) -> None:
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the array bytes: the footer and the size stay intact
    shard.write_bytes(bytes(data))


def test_verify_checks_every_sha256(shards, capsys):
    assert cli(["verify", str(shards), "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"{shards}: 6 shards, 32 rows, {sum(p.stat().st_size for p in shards.glob('*.parquet'))} bytes; "
                   "every sha256 matches manifest.json"]  # fmt: skip

    flip_a_byte(shards / "shard-00001.parquet")
    (shards / "shard-00005.parquet").unlink()
    assert cli(["verify", str(shards), "--quiet"]) == 2
    one_line(capsys, "r2tnet verify: error:", "shard-00001.parquet: expected sha256", "1 more bad shards: shard-00005")


def test_verify_shards_flag_refuses_a_shard_whose_bytes_changed(shards, tmp_path, capsys):
    flip_a_byte(shards / "shard-00003.parquet")
    pretrain_fails(
        shards, tmp_path, capsys, "shard-00003.parquet: expected sha256", "(manifest.json), found",
        extra=["--verify_shards", "true"],
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------ resume
def resume(run, pristine, *extra):
    args = [*common(pristine / "shards", 3), "--output_dir", str(run), "--resume_from_checkpoint", "latest", *extra]
    return train("pretrain", args)


def resume_fails(run, pristine, capsys, *needles):
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    metrics = (run / "metrics.jsonl").read_text()
    assert resume(run, pristine) == 2
    line = one_line(capsys, "checkpoints/step_000002", *needles, "resume from an earlier checkpoint")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert (run / "metrics.jsonl").read_text() == metrics
    return line


def test_a_good_checkpoint_resumes(run, pristine):
    assert resume(run, pristine) == 0
    assert (run / "checkpoints" / "step_000003" / "model.safetensors").is_file()


def garbage(path):
    path.write_bytes(b"not a torch file")


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def wrong_content(path):
    torch.save({"random_state": "x"}, path)


@pytest.mark.parametrize(
    "name, tamper, found",
    [
        ("random_states_0.pkl", garbage, "expected the RNG states of one process, found an unreadable file"),
        ("random_states_0.pkl", Path.unlink, "no such file"),
        ("random_states_0.pkl", wrong_content, "missing ['numpy_random_seed', 'torch_manual_seed']"),
        ("optimizer.bin", truncate, "expected the optimizer state of the checkpoint, found an unreadable file"),
        ("optimizer.bin", Path.unlink, "no such file"),
        ("model.safetensors", truncate, "beyond the"),
        ("model.safetensors", Path.unlink, "no such file"),
        (
            "model.safetensors",
            lambda p: p.write_bytes(struct.pack("<Q", 2**60) + p.read_bytes()[8:]),
            "found 1152921504606846976",
        ),
        ("loop_state.json", lambda p: p.write_text('{"step": 2, '), "invalid JSON"),
        ("loop_state.json", lambda p: p.write_text('{"step": 2, "best": {"value": 1, "step": 2}}'), "missing ['data']"),
        ("loop_state.json", lambda p: p.write_text('{"step": "two"}'), "expected step as a count"),
        ("random_states_1.pkl", lambda p: shutil.copy(p.with_name("random_states_0.pkl"), p), "written by 2 processes"),
    ],
)
def test_a_damaged_checkpoint_is_refused_before_resuming(run, pristine, capsys, name, tamper, found):
    tamper(run / "checkpoints" / "step_000002" / name)
    resume_fails(run, pristine, capsys, name, found)


def test_a_checkpoint_of_another_model_is_refused(run, pristine, capsys):
    other = json.dumps({"signature_dim": 32, "projection_hidden_size": 64, "projection_dropout": 0.1})
    assert resume(run, pristine, "--model_config", other) == 2
    one_line(capsys, "step_000002/model.safetensors: expected", "of shape", "model flags differ")


# ------------------------------------------------------------------------------------------------------ loading
def signatures_fail(model, tmp_path, capsys, pristine, *needles):
    output = tmp_path / "signatures.parquet"
    args = [
        "signatures",
        "--model",
        str(model),
        "--input",
        str(pristine / "shards"),
        "--output",
        str(output),
        "--quiet",
    ]
    assert cli(args) == 2
    line = one_line(capsys, "r2tnet signatures: error:", *needles)
    assert not output.exists() and not list(tmp_path.glob("*.skipped.tsv"))
    return line


class Exploit:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['EXPLOIT_MARK'], 'w').write('ran')",))


def test_pickled_weights_are_refused_unread(model, tmp_path, capsys, pristine, monkeypatch):
    mark = tmp_path / "exploit-ran"
    monkeypatch.setenv("EXPLOIT_MARK", str(mark))
    state = load_file(model / "model.safetensors")
    torch.save({**state, "x": Exploit()}, model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    signatures_fail(model, tmp_path, capsys, pristine, "only pytorch_model.bin", "r2tnet import-weights")
    out = tmp_path / "out"
    assert (
        train(
            "finetune",
            [*common(pristine / "shards", 1), "--init_from", str(model), "--target", "score", "--output_dir", str(out)],
        )
        == 2
    )
    one_line(capsys, "only pytorch_model.bin", "r2tnet import-weights")
    assert not mark.exists()


@pytest.mark.parametrize(
    "tamper, found",
    [
        (truncate, "beyond the"),
        (lambda p: p.write_bytes(struct.pack("<Q", 2**60) + p.read_bytes()[8:]), "found 1152921504606846976"),
        (lambda p: p.write_bytes(b"\x03"), "a file of 1 bytes"),
        (lambda p: p.write_bytes(struct.pack("<Q", 4) + b"{{{{"), "JSONDecodeError"),
    ],
)
def test_a_broken_safetensors_file_is_one_line(model, tmp_path, capsys, pristine, tamper, found):
    tamper(model / "model.safetensors")
    signatures_fail(model, tmp_path, capsys, pristine, "model.safetensors: expected", found)


def edit_json(path, edit):
    values = json.loads(path.read_text())
    edit(values)
    path.write_text(json.dumps(values))


def test_config_weight_mismatch_names_the_tensor(model, tmp_path, capsys, pristine):
    edit_json(model / "config.json", lambda c: c["backbone_config"].update(num_rois=13))
    signatures_fail(model, tmp_path, capsys, pristine, "config.json: expected tensor", "of shape", "shape [")


@pytest.mark.parametrize(
    "file, content, found",
    [
        ("config.json", b'{"model_type": "r2tnet", ', "invalid JSON"),
        ("config.json", b"\xff\xfe{}", "non-UTF-8"),
        ("config.json", b"[]", "a JSON list"),
        ("config.json", None, "backbone_config.hidden_size as an integer"),
        ("preprocessor_config.json", b"{", "invalid JSON"),
        ("preprocessor_config.json", b'{"num_rois": [12]}', "num_rois as"),
        ("preprocessor_config.json", b'{"normalization": "minmax"}', "normalization must be one of"),
    ],
)
def test_a_corrupt_config_or_processor_config_is_one_line(model, tmp_path, capsys, pristine, file, content, found):
    if content is None:
        edit_json(model / file, lambda c: c["backbone_config"].update(hidden_size="32"))
    else:
        (model / file).write_bytes(content)
    signatures_fail(model, tmp_path, capsys, pristine, f"{file}: expected", found)


def test_a_processor_of_another_model_names_the_folder_and_the_processor(model, tmp_path, capsys, pristine):
    def other(values):
        values.update(num_rois=13)
        values.pop("roi_labels", None)
        values.pop("parcel_order_hash", None)

    edit_json(model / "preprocessor_config.json", other)
    line = signatures_fail(model, tmp_path, capsys, pristine, "preprocessor_config.json: expected num_rois 12",
                           f"as the model in {model}", "found num_rois 13")  # fmt: skip
    assert "fmri_values" not in line


def test_fingerprint_loads_through_the_same_checks(model):
    from r2tnet_hf.evaluation.fingerprint_scans import load_encoder

    encoder, processor = load_encoder(model)
    assert processor.num_rois == 12 and hasattr(encoder, "projection")
    truncate(model / "model.safetensors")
    with pytest.raises(FmriInputError, match=r"model\.safetensors: expected a consistent header entry"):
        load_encoder(model)


def test_init_from_a_truncated_model_is_one_line(model, pristine, tmp_path, capsys):
    truncate(model / "model.safetensors")
    out = tmp_path / "out"
    args = [*common(pristine / "shards", 1), "--init_from", str(model), "--target", "score", "--output_dir", str(out)]
    assert train("finetune", args) == 2
    one_line(capsys, "model.safetensors: expected", "truncated")
