"""The README's usage snippet, run as written on a model shaped like the demo's (saved where the snippet looks)."""

import re
from pathlib import Path

import numpy as np
import torch

from r2tnet_hf import FmriProcessor, R2TNetConfig, R2TNetForContrastivePretraining, TangentConnectomeConfig
from r2tnet_hf.training.loop import default_projection

README = Path(__file__).resolve().parents[1] / "README.md"


def use_snippet() -> str:
    """The first python block of the README's `## Use` section."""
    section = README.read_text(encoding="utf-8").split("\n## Use\n", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_the_use_snippet_returns_a_signature_without_gradients(tmp_path, monkeypatch):
    snippet = use_snippet()
    model_dir = tmp_path / re.search(r'from_pretrained\("([^"]+)"\)', snippet)[1]
    scan = tmp_path / re.search(r'scan = "([^"]+)"', snippet)[1]
    rows, width = map(int, re.search(r"\.signature\s+# \((\d+), (\d+)\)", snippet).groups())
    # the demo's model: the tangent backbone on 119 MIST parcels, its features the signature
    backbone = TangentConnectomeConfig(num_rois=119)
    torch.manual_seed(0)
    model = R2TNetForContrastivePretraining(R2TNetConfig(backbone_config=backbone, **default_projection(backbone)))
    model.save_pretrained(model_dir)
    FmriProcessor(num_rois=119, atlas="MIST 119").save_pretrained(model_dir)
    scan.parent.mkdir(parents=True)
    np.savetxt(scan, np.random.default_rng(0).standard_normal((60, 119)), delimiter="\t")  # timepoints × ROIs
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(snippet, str(README), "exec"), namespace)
    signature = namespace["signature"]
    assert not signature.requires_grad and signature.grad_fn is None
    assert tuple(signature.shape) == (rows, width) == (1, 7021)
    assert torch.allclose(signature.norm(dim=-1), torch.ones(1), atol=1e-5)
