"""Volumes end to end on real files: nibabel's example4d.nii.gz and a frame_*.pt folder → manifest → shards of
2-frame windows → `accelerate launch` pretraining with Swin4D (2 CPU processes) → a model loaded with AutoModel."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from nibabel.testing import data_path

from r2tnet_hf.cli import main

ROOT = Path(__file__).resolve().parents[2]
SWIN = {
    "patch_size": [16, 16, 8, 1],
    "window_size": [2, 2, 2, 2],
    "embed_dim": 8,
    "depths": [1, 1],
    "num_heads": [2, 2],
}


def test_nifti_and_frames_to_swin4d_pretraining(tmp_path):
    example = Path(data_path) / "example4d.nii.gz"  # 128×96×24, 2 frames; the header's TR says 2000 'sec'
    generator = torch.Generator().manual_seed(0)
    for subject in ("sub-a", "sub-b", "sub-c"):
        folder = tmp_path / "frames" / "img" / subject
        folder.mkdir(parents=True)
        for t in range(4):
            torch.save(torch.randn(1, 128, 96, 24, generator=generator), folder / f"frame_{t}.pt")
    manifest = tmp_path / "manifest.tsv"
    rows = [f"{s}\t1\trest\trest\tframes/img/{s}\t2.0" for s in ("sub-a", "sub-b", "sub-c")]
    rows.append(f"example\t1\trest\trest\t{example}\t2.0")  # a header TR of 2000 'sec' is refused: give it
    manifest.write_text("subject\tsession\tmodality\ttask\tpath\trepetition_time\n" + "\n".join(rows) + "\n")
    shards = tmp_path / "shards"
    assert main(["convert", str(manifest), "--out", str(shards), "--window", "2", "--min-length", "2", "--quiet"]) == 0
    summary = json.loads((shards / "manifest.json").read_text())
    assert summary["rows"] == 3 * 2 + 1 and summary["subjects"] == 4  # 4-frame scans → two windows each

    output = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(ROOT / "scripts" / "accelerate" / "cpu.yaml"),
            str(ROOT / "scripts" / "pretrain.py"),
            "--data", str(shards), "--output_dir", str(output), "--backbone", "swin4d",
            "--backbone_config", json.dumps(SWIN), "--model_config", json.dumps({"signature_dim": 32}),
            "--positives", "same_scan", "--subjects_per_batch", "2", "--window_length", "2",
            "--validation_fraction", "0", "--test_fraction", "0",
            "--max_steps", "2", "--save_steps", "2", "--eval_steps", "2", "--progress", "false",
        ],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "num_processes: 2" in (output / "run_config.yaml").read_text()
    assert (output / "checkpoints" / "step_000002" / "model.safetensors").is_file()

    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(output / "last").eval()
    processor = AutoFeatureExtractor.from_pretrained(output / "last")
    assert model.config.backbone_config.model_type == "swin4d" and processor.volume_shape == [1, 128, 96, 24]
    batch = processor(str(example), repetition_time=2.0, return_tensors="pt")  # the header TR is refused
    with torch.no_grad():
        signature = model(**batch).signature
    assert signature.shape == (1, 32) and np.isclose(float(signature.norm()), 1.0, atol=1e-5)
