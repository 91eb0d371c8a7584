"""The own-data walkthrough (`examples/walkthrough.sh`) runs end to end, and what it writes is right: volumes
parcellated at inference with the atlas `convert` recorded give the signatures that the shards give.

CI runs the script on the TSV and NIfTI folders (each step is a new process that spends seconds importing); the CIFTI
folder goes through the same commands in-process (`test_cifti_in_process`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from r2tnet_hf.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    out = tmp_path_factory.mktemp("walkthrough")
    env = {
        **os.environ,
        "SUBJECTS": "8",
        "STEPS": "2",
        "KINDS": "tsv nifti",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "walkthrough.sh"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def _by_scan(path: Path) -> dict:
    """Signatures of a `signatures` Parquet file by (subject, scan name without the image suffix)."""
    table = pq.read_table(path).to_pydict()
    keys = [(s, Path(p).name.split("_bold")[0]) for s, p in zip(table["subject"], table["path"])]
    return dict(zip(keys, table["signature"]))


def assert_same_signatures(from_files: Path, from_shards: Path) -> None:
    """The 32 scans' signatures from the files (parcellated at inference) equal those from the shards, 1e-4."""
    by_file, by_shard = _by_scan(from_files), _by_scan(from_shards)
    assert by_file.keys() == by_shard.keys() and len(by_file) == 32
    for key in by_file:
        np.testing.assert_allclose(by_file[key], by_shard[key], atol=1e-4)


@pytest.mark.parametrize("kind", ["tsv", "nifti"])
def test_every_step_wrote_its_output(walkthrough, kind):
    out, printed = walkthrough
    work = out / kind
    manifest = (work / "manifest.tsv").read_text().splitlines()
    assert len(manifest) == 1 + 8 * 2 * 2  # 8 people × 2 sessions × rest and task, found by `r2tnet manifest`
    assert json.loads((work / "shards" / "manifest.json").read_text())["rows"] == 32
    assert (work / "run" / "best" / "model.safetensors").is_file() and (work / "run" / "test_results.json").is_file()
    report = json.loads((work / "fingerprint" / "fingerprint.json").read_text())
    assert report["lengths"]["full"]["strongest"] is not None  # fitted on train, chosen on validation
    signatures = pq.read_table(work / "signatures.parquet")
    assert signatures.num_rows == 32 and not Path(f"{work}/signatures.parquet.skipped.tsv").exists()
    for name in ("README.md", "model.safetensors", "config.json", "preprocessor_config.json"):
        assert (work / "publish" / name).is_file()
    assert "loaded R2TNetModel (12 ROIs" in printed and "32 signatures" in printed
    processor = json.loads((work / "run" / "best" / "preprocessor_config.json").read_text())
    assert processor["window_length"] == 64  # the training window, kept for inference
    assert processor["roi_labels"][0] == "Visual_L_1"  # the atlas's names, not placeholders
    if kind != "tsv":
        assert Path(processor["atlas_file"]).is_file()


@pytest.mark.parametrize("kind", ["nifti"])
def test_dense_files_at_inference_equal_their_shards(walkthrough, kind, tmp_path):
    out, _ = walkthrough
    work = out / kind
    from_shards = tmp_path / "from_shards.parquet"
    model = str(work / "run" / "best")
    assert main(["signatures", "--model", model, "--input", str(work / "shards"), "--modality", "all",
                 "--output", str(from_shards), "--quiet"]) == 0  # fmt: skip
    assert_same_signatures(work / "signatures.parquet", from_shards)


@pytest.mark.parametrize("kind", ["nifti"])
def test_a_published_model_carries_its_atlas(walkthrough, kind, tmp_path):
    """`publish` ships the atlas in `atlas/` and points the processor at it, so a copy of the folder elsewhere still
    parcellates the volumes (to the same signatures)."""
    import shutil

    out, _ = walkthrough
    work = out / kind
    published = json.loads((work / "publish" / "preprocessor_config.json").read_text())
    assert published["atlas_file"].startswith("atlas/") and (work / "publish" / published["atlas_file"]).is_file()
    moved = shutil.copytree(work / "publish", tmp_path / "elsewhere")
    scans = sorted((out / "data" / kind).rglob("sub-001_ses-1_task-rest_bold.*"))
    scans = [p for p in scans if not p.name.endswith(".json")]
    target = tmp_path / "one"
    target.mkdir()
    shutil.copy(scans[0], target / scans[0].name)
    output = tmp_path / "sig.parquet"
    assert main(["signatures", "--model", str(moved), "--input", str(target), "--output", str(output), "--quiet"]) == 0
    ours = pq.read_table(output).to_pydict()["signature"][0]
    walk = pq.read_table(work / "signatures.parquet").to_pydict()
    index = [Path(p).name for p in walk["path"]].index(scans[0].name)
    np.testing.assert_allclose(ours, walk["signature"][index], atol=1e-5)


def test_cifti_in_process(walkthrough, tmp_path, capsys):
    """The walkthrough's commands on the dense CIFTI folder (with its dlabel), called in this process."""
    from r2tnet_hf.training import main as training_main

    data = walkthrough[0] / "data" / "cifti"
    work = tmp_path / "cifti"
    atlas = str(data / "atlas-toy.dlabel.nii")
    commands = [
        ["manifest", str(data), "--out", str(work / "manifest.tsv")],
        ["convert", str(work / "manifest.tsv"), "--out", str(work / "shards"), "--atlas", atlas, "--quiet"],
        ["split", str(work / "manifest.tsv"), "--out", str(work / "splits.json"), "--fractions", "0.5", "0.25", "0.25"],
    ]
    for argv in commands:
        assert main(argv) == 0, capsys.readouterr().err
    assert training_main("pretrain", ["--data", str(work / "shards"), "--output_dir", str(work / "run"), "--splits",
                                      str(work / "splits.json"), "--max_steps", "2", "--window_length", "64",
                                      "--subjects_per_batch", "4", "--progress", "false"]) == 0  # fmt: skip
    model = str(work / "run" / "best")
    for source, name in ((data, "files.parquet"), (work / "shards", "shards.parquet")):
        argv = ["signatures", "--model", model, "--input", str(source), "--modality", "all", "--quiet"]
        assert main([*argv, "--output", str(work / name)]) == 0, capsys.readouterr().err
    assert main(["fingerprint", "--model", model, "--manifest", str(work / "manifest.tsv"), "--splits",
                 str(work / "splits.json"), "--output", str(work / "fingerprint"), "--quiet"]) == 0  # fmt: skip
    assert main(["publish", str(work / "run"), "--repo-id", "my-lab/r2tnet-cifti", "--dry-run", str(work / "pub")]) == 0
    assert (work / "pub" / "atlas" / "atlas-toy.dlabel.nii").is_file()
    assert_same_signatures(work / "files.parquet", work / "shards.parquet")
