"""A frozen backbone stays frozen in a probe: its weights and its batch-norm statistics, through the training loop."""

import json

import torch
from safetensors.torch import load_file

from r2tnet_hf.cli import main
from r2tnet_hf.training import main as train
from r2tnet_hf.training.loop import train_unfrozen

CNN_GRU = {"conv_channels": [4, 8], "hidden_size": 16}


def test_a_probe_keeps_the_frozen_backbones_batch_norm_statistics(tmp_path):
    generator = torch.Generator().manual_seed(0)
    rows = []
    for number in range(8):
        subject = f"sub-{number:02d}"
        for session in (1, 2):
            folder = tmp_path / "img" / subject / str(session)
            folder.mkdir(parents=True)
            for t in range(6):
                torch.save(torch.randn(1, 8, 8, 8, generator=generator) * (1 + number), folder / f"frame_{t}.pt")
            rows.append(f"{subject}\t{session}\trest\trest\timg/{subject}/{session}\t2.0\t{20 + number}")
    manifest = tmp_path / "manifest.tsv"
    header = "subject\tsession\tmodality\ttask\tpath\trepetition_time\tage\n"
    manifest.write_text(header + "\n".join(rows) + "\n")
    shards = tmp_path / "shards"
    assert main(["convert", str(manifest), "--out", str(shards), "--window", "3", "--min-length", "2", "--quiet"]) == 0
    splits = tmp_path / "splits.json"
    names = [f"sub-{n:02d}" for n in range(8)]
    splits.write_text(json.dumps({"train": names[:4], "validation": names[4:6], "test": names[6:]}))
    common = ["--data", str(shards), "--splits", str(splits), "--backbone", "cnn_gru",
              "--backbone_config", json.dumps(CNN_GRU), "--window_length", "3", "--progress", "false"]  # fmt: skip
    pretrained = tmp_path / "pretrain"
    assert train("pretrain", [*common, "--output_dir", str(pretrained), "--positives", "cross_session",
                              "--subjects_per_batch", "2", "--max_steps", "2", "--eval_steps", "2"]) == 0  # fmt: skip
    probe = tmp_path / "probe"
    assert train("finetune", [*common, "--output_dir", str(probe), "--init_from", str(pretrained / "best"),
                              "--target", "age", "--batch_size", "4", "--max_steps", "3", "--eval_steps", "3",
                              "--learning_rate", "0.01"]) == 0  # fmt: skip
    before = load_file(pretrained / "best" / "model.safetensors")
    after = load_file(probe / "last" / "model.safetensors")
    statistics = [k for k in before if k.startswith("r2tnet.backbone") and "running_" in k]
    assert statistics, "the CNN+GRU backbone has batch norms"
    for key in (k for k in before if k.startswith("r2tnet.")):  # weights and batch-norm statistics alike
        assert torch.equal(before[key], after[key]), key


def test_train_mode_leaves_frozen_parts_in_eval_mode():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Dropout(0.5), torch.nn.Linear(3, 1))
    model[0].requires_grad_(False)
    train_unfrozen(model)
    assert not model[0].training and model[2].training and model.training
