import json
from pathlib import Path

import pytest
import torch
import yaml

from r2tnet_hf import FmriProcessor, R2TNetConfig, R2TNetForPhenotypePrediction, R2TNetModel, RoiTransformerConfig

NUM_ROIS = 16
LABELS = [f"roi_{i:03d}" for i in range(NUM_ROIS)]


def tiny_config(**kwargs) -> R2TNetConfig:
    backbone = RoiTransformerConfig(
        num_rois=NUM_ROIS,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    return R2TNetConfig(backbone_config=backbone, projection_hidden_size=64, **kwargs)


def tiny_processor() -> FmriProcessor:
    return FmriProcessor(num_rois=NUM_ROIS, atlas="synthetic16", roi_labels=LABELS, window_length=40)


def save_candidate(folder: Path, model, metric: str, value: float, greater_is_better: bool = True, **metrics):
    model.save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    results = {
        "metric": metric,
        "greater_is_better": greater_is_better,
        "value": value,
        "step": 100,
        "split": "validation",
        "metrics": {metric: value, **metrics},
    }
    (folder / "eval_results.json").write_text(json.dumps(results))


def make_run(run_dir: Path, task: str = "pretrain", seed: int = 0, config_extra: dict | None = None) -> Path:
    """A fake run folder following the training contract: run_config.yaml, metrics.jsonl, best/, checkpoints/."""
    torch.manual_seed(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "task": task,
        "model_type": "r2tnet",
        "backbone": "roi_transformer",
        "objective": "nt_xent" if task == "pretrain" else "phenotype",
        "data": "/data/shards/hcp_synthetic",
        "learning_rate": 3e-4,
        "batch_size": 8,
        "max_steps": 300,
        "seed": seed,
        "mixed_precision": "no",
        **(config_extra or {}),
    }
    if task == "pretrain":
        config.update(positives="cross_modality", metric_for_best_model="val_fingerprint_rank1", greater_is_better=True)
        model = R2TNetModel(tiny_config())
        save_candidate(run_dir / "best", model, "val_fingerprint_rank1", 0.86, val_fc_rank1=0.93, val_loss=1.2)
    else:
        config.update(target="score", problem_type="regression", base_model="org/r2tnet-tiny")
        model = R2TNetForPhenotypePrediction(tiny_config(num_labels=1, problem_type="regression"))
        save_candidate(run_dir / "best", model, "val_pearson_r", 0.4, val_mae=3.1)
        (run_dir / "test_results.json").write_text(
            json.dumps({"metrics": {"test_pearson_r": 0.31, "test_mae": 4.2}, "fc_baseline": {"test_pearson_r": 0.2}})
        )
    (run_dir / "run_config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 100, "loss": 1.5}) + "\n")
    (run_dir / "checkpoints" / "step_000100").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_000100" / "model.safetensors").write_bytes(b"accelerate state, not a model")
    return run_dir


@pytest.fixture
def pretrain_run(tmp_path):
    return make_run(tmp_path / "run_pretrain")


@pytest.fixture
def finetune_run(tmp_path):
    return make_run(tmp_path / "run_finetune", task="finetune")
