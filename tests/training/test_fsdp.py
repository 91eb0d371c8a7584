"""FSDP2 on 2 CPU processes through scripts/accelerate/fsdp.yaml: sharded weights, a sharded checkpoint that resumes
exactly, safetensors exports, the DDP run's losses; and the launches that cannot shard, refused in one line."""

import json
import os
import pickle
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file

from r2tnet_hf import FmriInputError
from r2tnet_hf.training import main
from r2tnet_hf.training.checkpointing import _check_sharded_model, check_checkpoint, read_dcp_metadata
from tests.training.conftest import accelerate_launch

# DDP and FSDP reduce the same gradients in another order (all-reduce against reduce-scatter): float32 rounding only.
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-6
FSDP = ("--num_processes", "2", "--mixed_precision", "no")


def losses(run):
    return [e["loss"] for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in e]


def test_fsdp_yaml_shards_resumes_exactly_and_matches_ddp(training_shards, ddp_run, tmp_path):
    sharded = tmp_path / "fsdp"
    result = accelerate_launch("fsdp.yaml", training_shards, sharded, launcher=FSDP)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((sharded / f"rank{r}.json").read_text()) for r in (0, 1)]
    run_config = yaml.safe_load((sharded / "run_config.yaml").read_text())
    assert run_config["distributed_type"] == "FSDP" and [r["world_size"] for r in ranks] == [2, 2]
    # every tensor is a DTensor, and each rank holds half of the weights (a different half: other checksums)
    for rank in ranks:
        assert rank["model_class"] == "FSDPR2TNetForContrastivePretraining"
        assert rank["sharded_tensors"] == rank["tensors"] and rank["local_numel"] == rank["numel"] // 2
    assert ranks[0]["sha256"] != ranks[1]["sha256"]
    # the checkpoint is torch.distributed.checkpoint shards; the exported models are whole safetensors files
    checkpoint = sharded / "checkpoints" / "step_000002"
    assert sorted(p.name for p in (checkpoint / "pytorch_model_fsdp_0").glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    assert not (checkpoint / "model.safetensors").exists()
    assert json.loads((sharded / "last" / "config.json").read_text())["architectures"] == [
        "R2TNetForContrastivePretraining"
    ]
    assert (sharded / "best" / "model.safetensors").is_file()

    # the same seed, data and steps as the DDP run: the same losses and weights, to float32 rounding
    ddp, ddp_result = ddp_run
    assert ddp_result.returncode == 0, ddp_result.stderr[-3000:]
    assert len(losses(sharded)) == 4 and losses(sharded) == pytest.approx(losses(ddp), abs=LOSS_TOLERANCE)
    a, b = load_file(ddp / "last" / "model.safetensors"), load_file(sharded / "last" / "model.safetensors")
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < WEIGHT_TOLERANCE

    # resumed from the sharded step-2 checkpoint, the run ends bit-identical to the uninterrupted one
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, resumed / "checkpoints" / checkpoint.name)
    for name in ("splits.json", "metrics.jsonl"):
        shutil.copy(sharded / name, resumed / name)
    result = accelerate_launch(
        "fsdp.yaml", training_shards, resumed, "--resume_from_checkpoint", "latest", launcher=FSDP
    )
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = load_file(sharded / "last" / "model.safetensors"), load_file(resumed / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(resumed) == losses(sharded)
    assert [json.loads((resumed / f"rank{r}.json").read_text())["sha256"] for r in (0, 1)] == [
        r["sha256"] for r in ranks
    ]

    # what a resume checks before torch reads a sharded checkpoint (the `.metadata` files are pickles)
    from r2tnet_hf.models.r2tnet import R2TNetForContrastivePretraining

    model = R2TNetForContrastivePretraining.from_pretrained(sharded / "last")
    _check_sharded_model(checkpoint, 0, model)  # every tensor, full shapes
    metadata = checkpoint / "pytorch_model_fsdp_0" / ".metadata"
    assert "model.r2tnet.projection.layers.0.weight" in read_dcp_metadata(metadata).state_dict_metadata
    model.r2tnet.projection.layers[0] = torch.nn.Linear(32, 16)
    with pytest.raises(FmriInputError, match=r"projection.layers.0.weight of shape \[16, 32\] .*found shape"):
        _check_sharded_model(checkpoint, 0, model)

    class Payload:
        def __reduce__(self):
            return (print, ("ran code from a checkpoint",))

    metadata.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(FmriInputError, match=r"\.metadata: expected DCP checkpoint metadata .*builtins.print is not"):
        read_dcp_metadata(metadata)
    shard = checkpoint / "optimizer_0" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:10])
    accelerator = type("FsdpAccelerator", (), {"distributed_type": "FSDP", "_models": [], "_optimizers": [object()]})
    with pytest.raises(FmriInputError, match=r"__1_0.distcp: expected the sharded optimizer state .* found 10 bytes"):
        check_checkpoint(accelerator, checkpoint)


@pytest.mark.parametrize(
    "env, flags, found",
    [
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, [], "found NO with 1 process(es)"),
        ({}, ["--sharding", "fsdp"], "found NO with 1 process(es)"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, [], "found fsdp_version 1"),
        (
            {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT"},
            [],
            "found FULL_STATE_DICT",
        ),
    ],
)
def test_a_launch_that_would_not_shard_is_refused(monkeypatch, tmp_path, capsys, env, flags, found):
    """FSDP asked for, but a single process (`python scripts/pretrain.py`, no `accelerate launch`), FSDP1, or full
    state-dict checkpoints: one line, exit 2, before any data is read."""
    # Accelerate sets ACCELERATE_USE_FSDP when given a plugin: set here first, so that the test undoes it
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = ["--data", str(tmp_path / "never-read"), "--output_dir", str(tmp_path / "run"), *flags]
    assert main("pretrain", argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pretrain: error: accelerate launch: expected ") and found in err[0]
    monkeypatch.undo()
    assert "ACCELERATE_USE_FSDP" not in os.environ  # nothing leaks into the tests after this one
    if "process" in found:
        assert "accelerate launch --config_file scripts/accelerate/fsdp.yaml --num_processes N" in err[0]
