import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r2tnet_hf.data.shards import ConvertOptions, convert
from r2tnet_hf.data.synthetic import make_synthetic_cohort

TINY = [
    "--window_length",
    "48",
    "--subjects_per_batch",
    "4",
    "--progress",
    "false",
    "--backbone_config",
    json.dumps(
        {"embed_dim": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "readout_size": 4}
        | {"hidden_size": 32, "hidden_dropout_prob": 0.1}
    ),
    "--model_config",
    json.dumps({"signature_dim": 64, "projection_hidden_size": 64, "projection_dropout": 0.1}),
    "--backbone",
    "connectome_transformer",
]


@pytest.fixture(scope="session")
def training_shards(tmp_path_factory):
    """12 subjects × 2 sessions × (rest, task), 12 ROIs × 96 frames, in 12 shards (a multiple of 2 ranks)."""
    folder = tmp_path_factory.mktemp("training")
    make_synthetic_cohort(folder / "cohort", subjects=12, sessions=2, rois=12, frames=96, seed=1)
    convert(folder / "cohort" / "manifest.tsv", folder / "shards", ConvertOptions(shard_size_mb=0.015), progress=False)
    return folder / "shards"


ROOT = Path(__file__).resolve().parents[2]
# The 2-process runs DDP and FSDP are compared on: the same seed, data and steps; a loss logged at every step.
LAUNCHED = ["--max_steps", "4", "--eval_steps", "4", "--save_steps", "2", "--save_total_limit", "5"]
LAUNCHED += ["--logging_steps", "1", "--subjects_per_batch", "2", *TINY[2:]]


def accelerate_launch(config_file: str, shards, output, *flags, launcher=()):
    """`accelerate launch --config_file scripts/accelerate/CONFIG tests/training/ddp_check.py` on the shards."""
    return subprocess.run(
        [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(ROOT / "scripts" / "accelerate" / config_file), *launcher,
            str(ROOT / "tests" / "training" / "ddp_check.py"),
            "--data", str(shards), "--output_dir", str(output), *LAUNCHED, *map(str, flags),
        ],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="session")
def ddp_run(training_shards, tmp_path_factory):
    """2 gloo processes with DDP (scripts/accelerate/cpu.yaml): the run folder, and the launch's result."""
    output = tmp_path_factory.mktemp("ddp") / "run"
    return output, accelerate_launch("cpu.yaml", training_shards, output)
