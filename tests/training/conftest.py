import json

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
