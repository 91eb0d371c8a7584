import json
import shutil

import pytest
import torch

from r2tnet_hf import FmriInputError, R2TNetForPhenotypePrediction, R2TNetModel
from r2tnet_hf.cli import main
from r2tnet_hf.hub import find_candidates, load_model, select_best
from r2tnet_hf.hub.publish import publish_run

from .conftest import save_candidate, tiny_config


def add_candidate(run, name, metric, value, greater_is_better=True):
    folder = run / name
    save_candidate(folder, R2TNetModel(tiny_config()), metric, value, greater_is_better)
    return folder


@pytest.mark.parametrize("greater_is_better,expected", [(True, "high"), (False, "low")])
def test_best_candidate_follows_greater_is_better(tmp_path, greater_is_better, expected):
    run = tmp_path / "run"
    # Names that would mislead a file-name parser: the choice comes from eval_results.json only.
    add_candidate(run, "high", "val_loss", 0.9, greater_is_better)
    add_candidate(run, "low", "val_loss", 0.2, greater_is_better)
    add_candidate(run, "step_999999_best", "val_loss", 0.5, greater_is_better)
    (run / "checkpoints" / "step_000100").mkdir(parents=True)  # an Accelerate state: not a candidate
    candidates = find_candidates(run)
    assert len(candidates) == 3
    assert select_best(candidates).folder.name == expected


def test_mismatched_metrics_are_refused(tmp_path):
    run = tmp_path / "run"
    add_candidate(run, "a", "val_fingerprint_rank1", 0.9)
    add_candidate(run, "b", "val_loss", 0.1, greater_is_better=False)
    with pytest.raises(FmriInputError, match="same validation metric"):
        select_best(find_candidates(run))
    assert main(["publish", str(run), "--repo-id", "x/y", "--dry-run", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_refused_candidates_are_named_by_their_folder(tmp_path, capsys):
    """Two runs' best/ folders under one folder (as the demo writes them): the message says which is which."""
    run = tmp_path / "demo"
    add_candidate(run / "runs" / "task", "best", "val_fingerprint_rank1", 0.9)
    add_candidate(run / "runs" / "phenotype", "best", "val_mae", 0.4, greater_is_better=False)
    capsys.readouterr()  # the progress bars of saving them
    assert main(["publish", str(run), "--repo-id", "x/y", "--dry-run", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "runs/phenotype/best/ records val_mae" in err and "runs/task/best/ records val_fingerprint_rank1" in err
    assert "r2tnet publish RUN_DIR/<folder>" in err and err.count("\n") == 1


def test_run_without_candidates_is_refused(tmp_path, capsys):
    (tmp_path / "run" / "checkpoints" / "step_000100").mkdir(parents=True)
    assert main(["publish", str(tmp_path / "run"), "--repo-id", "x/y", "--dry-run", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "eval_results.json" in err


def test_dry_run_folder_contents(finetune_run, tmp_path):
    out = tmp_path / "dry"
    result = publish_run(finetune_run, "lab/head", dry_run=out)
    assert sorted(result.files) == sorted(p.name for p in out.iterdir())
    assert sorted(result.files) == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (out / name).read_bytes() == (finetune_run / "best" / name).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dry")]  # no staging left behind
    publish_run(finetune_run, "lab/head", dry_run=out)  # rerun replaces its own output
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(FmriInputError, match="a new folder"):
        publish_run(finetune_run, "lab/head", dry_run=tmp_path / "foreign")


def test_load_model_refuses_unknown_type_and_missing_weights(finetune_run, tmp_path):
    unknown = tmp_path / "unknown"
    shutil.copytree(finetune_run / "best", unknown)
    config = json.loads((unknown / "config.json").read_text())
    config["model_type"] = "brainfoo"
    (unknown / "config.json").write_text(json.dumps(config))
    with pytest.raises(FmriInputError, match=r"unknown.*model_type 'brainfoo'"):
        load_model(unknown)

    no_weights = tmp_path / "no_weights"
    shutil.copytree(finetune_run / "best", no_weights)
    (no_weights / "model.safetensors").unlink()
    torch.save({}, no_weights / "pytorch_model.bin")
    with pytest.raises(FmriInputError, match=r"no_weights: expected safetensors weights.*pytorch_model.bin"):
        load_model(no_weights)


def test_load_model_refuses_a_head_missing_from_the_checkpoint(pretrain_run, finetune_run):
    # transformers would initialise the classifier at random with a warning; load_model refuses.
    with pytest.raises(FmriInputError, match=r"missing.*classifier"):
        load_model(pretrain_run / "best", expected_class=R2TNetForPhenotypePrediction)
    # An encoder from a fine-tuned checkpoint is fine (the head is extra), and the default class is the checkpoint's.
    assert type(load_model(finetune_run / "best", expected_class=R2TNetModel)) is R2TNetModel
    assert type(load_model(finetune_run / "best")) is R2TNetForPhenotypePrediction


def test_plain_automodel_behaviour_that_load_model_guards(pretrain_run, tmp_path):
    # transformers 5: missing weights raise OSError; a head missing from the checkpoint is initialised at random.
    from transformers import AutoModel

    no_weights = tmp_path / "no_weights"
    shutil.copytree(pretrain_run / "best", no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(OSError, match=r"model\.safetensors"):
        AutoModel.from_pretrained(no_weights)
    _, info = R2TNetForPhenotypePrediction.from_pretrained(pretrain_run / "best", output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]


def test_unreachable_repo_id_is_a_clear_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FmriInputError, match="lab/does-not-exist: expected a local model folder or a reachable Hub"):
        load_model("lab/does-not-exist")
