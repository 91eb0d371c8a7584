import os

# No network in tests: everything is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch

import r2tnet_hf  # noqa: F401  (registers the Auto classes)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
