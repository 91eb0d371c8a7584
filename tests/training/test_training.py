import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModel

from r2tnet_hf import FmriInputError
from r2tnet_hf.training import load_run_config, main
from tests.training.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]


def script(name, *args, **kwargs):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


def test_run_config_yaml_flags_and_errors(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: shards\nlearning_rate: 0.001\nbackbone_config: {hidden_size: 64}\ntarget: age\n")
    config = load_run_config(path, {"learning_rate": "2e-4", "use_scheduler": "false", "max_grad_norm": "none"})
    assert config.learning_rate == 2e-4 and config.use_scheduler is False and config.max_grad_norm is None
    assert config.backbone_config == {"hidden_size": 64} and config.target == ["age"]
    assert config.metric_and_direction("pretrain") == ("val_fingerprint_segment_rank1", True)
    assert config.metric_and_direction("finetune") == ("val_mae", False)
    path.write_text("data: shards\nlearnig_rate: 0.001\n")
    with pytest.raises(
        FmriInputError, match=r"run.yaml: expected known run-config keys, found unknown \['learnig_rate'\]"
    ):
        load_run_config(path)
    with pytest.raises(FmriInputError, match=r"--max_steps: expected max_steps: int, found 'ten'"):
        load_run_config(None, {"data": "x", "max_steps": "ten"})
    with pytest.raises(FmriInputError, match="positives: cross_modality, cross_session or same_scan"):
        load_run_config(None, {"data": "x", "positives": "pairs"})


def test_bad_data_exits_2_with_one_line(tmp_path, capsys):
    assert main("pretrain", ["--data", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing: expected a folder written by r2tnet convert" in err[0]


def test_two_process_accelerate_launch_keeps_ranks_identical(ddp_run):
    output, result = ddp_run
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((output / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    run_config = yaml.safe_load((output / "run_config.yaml").read_text())
    assert run_config["num_processes"] == 2 and run_config["task"] == "pretrain"
    assert run_config["distributed_type"] == "MULTI_CPU" and ranks[0]["sharded_tensors"] == 0  # DDP: full copies
    assert (output / "checkpoints" / "step_000004" / "model.safetensors").is_file()
    assert (output / "best" / "eval_results.json").is_file()


def test_kill_9_then_resume_is_bit_identical(training_shards, tmp_path):
    common = [
        "--data", training_shards, "--max_steps", 12, "--eval_steps", 6, "--save_steps", 3,
        "--save_total_limit", 10, *TINY,
    ]  # fmt: skip
    straight = script("pretrain.py", *common, "--output_dir", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "pretrain.py"), *map(str, common), "--output_dir", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step_000006").is_dir() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "checkpoints" / "step_000012").exists(), "the run finished before it could be killed"

    resumed = script("pretrain.py", *common, "--output_dir", killed, "--resume_from_checkpoint", "latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(tmp_path / "straight" / "checkpoints" / "step_000012" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step_000012" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # the log is the uninterrupted run's (timings aside), with no step logged twice
    def log(run):
        timings = ("samples_per_second", "data_wait_fraction")
        events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in event.items() if k not in timings} for event in events]

    assert log(tmp_path / "straight") == log(killed)
    assert all(
        0 <= e["data_wait_fraction"] < 1 for e in map(json.loads, (killed / "metrics.jsonl").open()) if "loss" in e
    )
    # a new run into a folder with checkpoints is refused rather than mixed in
    again = script("pretrain.py", *common, "--output_dir", killed)
    assert again.returncode == 2 and "checkpoints of an earlier run" in again.stderr


def test_pretrain_then_finetune_and_load_in_a_fresh_process(training_shards, tmp_path):
    pretrain_dir = tmp_path / "pretrain"
    assert main("pretrain", ["--data", str(training_shards), "--output_dir", str(pretrain_dir),
                             "--max_steps", "6", "--eval_steps", "3", "--save_steps", "6", *TINY]) == 0  # fmt: skip
    best = json.loads((pretrain_dir / "best" / "eval_results.json").read_text())
    assert best["metric"] == "val_fingerprint_segment_rank1" and best["split"] == "validation"
    logged = [json.loads(line) for line in (pretrain_dir / "metrics.jsonl").read_text().splitlines()]
    metric = "val_fingerprint_segment_rank1"
    assert best["value"] == max(e[metric] for e in logged if metric in e)
    for key in ("val_fc_rank1", "val_fingerprint_map", "val_fingerprint_rank1_std", "val_baseline_segment_rank1"):
        assert key in best["metrics"]
    assert best["metrics"]["val_segment_baseline"] in ("raw", "state_centred", "tangent", "pca_removed", "pca_kept")
    assert list((pretrain_dir / "logs").rglob("events.out.tfevents.*")), "TensorBoard events are written"
    splits = json.loads((pretrain_dir / "splits.json").read_text())["splits"]
    assert not set(splits["train"]) & (set(splits["validation"]) | set(splits["test"]))

    finetune_dir = tmp_path / "finetune"
    assert main("finetune", ["--data", str(training_shards), "--output_dir", str(finetune_dir),
                             "--init_from", str(pretrain_dir / "best"), "--target", "score",
                             "--splits", str(pretrain_dir / "splits.json"),
                             "--max_steps", "6", "--eval_steps", "3", "--batch_size", "4", *TINY]) == 0  # fmt: skip
    results = json.loads((finetune_dir / "test_results.json").read_text())
    assert results["best"]["metric"] == "val_mae" and results["metrics"]["test_rows"] > 0
    assert {"test_mae", "test_pearson_r"} <= set(results["metrics"]) and "test_mae" in results["fc_baseline"]
    # the frozen encoder is the pretrained one, bit for bit
    pre = load_file(pretrain_dir / "best" / "model.safetensors")
    post = load_file(finetune_dir / "best" / "model.safetensors")
    assert all(torch.equal(pre[k], post[k]) for k in pre if k.startswith("r2tnet.backbone"))

    check = (
        "import sys, r2tnet_hf, torch\n"
        "from transformers import AutoModel, AutoFeatureExtractor\n"
        "m = AutoModel.from_pretrained(sys.argv[1]); p = AutoFeatureExtractor.from_pretrained(sys.argv[1])\n"
        "x = p(torch.randn(12, 60).numpy(), repetition_time=0.8, return_tensors='pt')\n"
        "print(type(m).__name__, tuple(m(**x).signature.shape))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check, str(finetune_dir / "best")], capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "R2TNetModel (1, 64)" in loaded.stdout

    # the ridge probe: the head is the FC baseline's ridge solution on the frozen signatures, tested once
    ridge_dir = tmp_path / "ridge"
    assert main("finetune", ["--data", str(training_shards), "--output_dir", str(ridge_dir),
                             "--init_from", str(pretrain_dir / "best"), "--target", "score",
                             "--splits", str(pretrain_dir / "splits.json"), "--probe_solver", "ridge",
                             *TINY]) == 0  # fmt: skip
    check_ridge_probe(training_shards, pretrain_dir, ridge_dir)
    shutil.rmtree(tmp_path)


def check_ridge_probe(shards_dir, pretrain_dir, ridge_dir):
    from r2tnet_hf import R2TNetForPhenotypePrediction
    from r2tnet_hf.data.streaming import ShardFolder
    from r2tnet_hf.evaluation.baselines import fit_ridge_by_validation
    from r2tnet_hf.training.validation import encode_rows, phenotype_targets, select_rows

    shards = ShardFolder(shards_dir)
    splits = json.loads((pretrain_dir / "splits.json").read_text())["splits"]
    encoder = R2TNetForPhenotypePrediction.from_pretrained(pretrain_dir / "best").r2tnet
    scale = encoder.config.signature_dim**0.5  # the head reads signature × √signature_dim
    data = {}
    for name in ("train", "validation"):
        rows = select_rows(shards, splits[name], "rest")
        data[name] = (
            encode_rows(encoder, shards, rows, "cpu") * scale,
            phenotype_targets(shards, rows, ["score"])[:, 0],
        )
    weights, bias, alpha = fit_ridge_by_validation(*data["train"], *data["validation"])
    probe = R2TNetForPhenotypePrediction.from_pretrained(ridge_dir / "best")
    np.testing.assert_allclose(probe.classifier.weight.detach().numpy()[0], weights, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probe.classifier.bias.detach().numpy()[0], bias, rtol=1e-4, atol=1e-5)
    pre, post = (
        load_file(pretrain_dir / "best" / "model.safetensors"),
        load_file(ridge_dir / "best" / "model.safetensors"),
    )
    assert all(torch.equal(pre[k], post[k]) for k in pre if k.startswith("r2tnet."))  # the encoder, untouched
    results = json.loads((ridge_dir / "test_results.json").read_text())
    assert results["best"]["metrics"]["val_ridge_alpha"] == [alpha] and results["best"]["step"] == 0
    assert "test_pearson_r" in results["metrics"] and "test_pearson_r" in results["fc_baseline"]
    assert (ridge_dir / "last" / "model.safetensors").is_file() and (ridge_dir / "run_config.yaml").is_file()


@pytest.mark.parametrize(
    ("flags", "found"),
    [
        (["--problem_type", "single_label_classification"], "found problem_type single_label_classification"),
        ([], "found init_from None"),
    ],
)
def test_a_ridge_probe_needs_a_frozen_r2tnet_and_a_regression_target(training_shards, tmp_path, capsys, flags, found):
    argv = ["--data", str(training_shards), "--output_dir", str(tmp_path / "run"), "--target", "score"]
    assert main("finetune", [*argv, "--probe_solver", "ridge", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "probe_solver ridge: expected a regression head on a frozen R2T-Net" in err[0]
    assert found in err[0]


@pytest.mark.parametrize("objective", ["masked", "jepa"])
def test_mnemodyn_pretrains_through_the_same_loop(training_shards, tmp_path, objective):
    output = tmp_path / objective
    tiny = {"num_hidden_layers": 1, "latent_size": 4, "field_hidden_size": 8, "field_rank": 2, "wavelet_levels": 2,
            "num_dense_layers": 1, "wavelet_kernel_size": 3, "reconstruction_bottleneck": 4}  # fmt: skip
    assert main("pretrain", ["--model", "mnemodyn", "--objective", objective, "--data", str(training_shards),
                             "--output_dir", str(output), "--mnemodyn_config", json.dumps(tiny),
                             "--window_length", "48", "--batch_size", "4", "--max_steps", "4", "--eval_steps", "2",
                             "--save_steps", "4", "--progress", "false"]) == 0  # fmt: skip
    best = json.loads((output / "best" / "eval_results.json").read_text())
    assert best["metric"] == "val_loss" and np.isfinite(best["value"])
    from transformers import AutoModelForPreTraining

    model = AutoModelForPreTraining.from_pretrained(output / "last")
    assert type(model).__name__ == "MnemoDynForPretraining" and model.config.objective == objective
    if objective == "jepa":  # the EMA target is saved with the model and stays without gradients
        start = load_file(output / "checkpoints" / "step_000004" / "model.safetensors")
        assert any(k.startswith("target_encoder") for k in start)
        assert not any(p.requires_grad for p in model.target_encoder.parameters())


def test_preset_probe_on_a_mnemodyn_backbone(tmp_path):
    """The ABIDE preset (DX_GROUP 1/2 → ASD/TDC, balanced accuracy) as a frozen-backbone probe of a MnemoDyn run."""
    from r2tnet_hf.data.manifest import read_manifest, write_manifest
    from r2tnet_hf.data.shards import ConvertOptions, convert
    from r2tnet_hf.data.synthetic import make_synthetic_cohort

    manifest = make_synthetic_cohort(tmp_path / "cohort", subjects=12, sessions=2, rois=12, frames=64, task=False)
    manifest = read_manifest(manifest.source)
    for record in manifest.records:  # a diagnosis linked to the planted score; one subject's cell is missing
        score = float(record.phenotypes["score"])
        record.phenotypes["DX_GROUP"] = "" if record.subject == "sub-001" else ("1" if score > 0 else "2")
    manifest.phenotype_columns.append("DX_GROUP")
    write_manifest(manifest, tmp_path / "cohort" / "manifest.tsv")
    convert(tmp_path / "cohort" / "manifest.tsv", tmp_path / "shards", ConvertOptions(), progress=False)

    tiny = {"num_hidden_layers": 1, "latent_size": 4, "field_hidden_size": 8, "field_rank": 2, "wavelet_levels": 2,
            "num_dense_layers": 1, "wavelet_kernel_size": 3, "reconstruction_bottleneck": 4}  # fmt: skip
    common = ["--data", str(tmp_path / "shards"), "--window_length", "48", "--batch_size", "4", "--progress", "false"]
    pretrain_dir = tmp_path / "mnemodyn"
    assert main("pretrain", [*common, "--model", "mnemodyn", "--mnemodyn_config", json.dumps(tiny),
                             "--output_dir", str(pretrain_dir), "--max_steps", "2", "--eval_steps", "2"]) == 0  # fmt: skip
    probe_dir = tmp_path / "probe"
    assert main("finetune", [*common, "--init_from", str(pretrain_dir / "best"), "--preset", "abide",
                             "--splits", str(pretrain_dir / "splits.json"), "--output_dir", str(probe_dir),
                             "--model_config", json.dumps({"signature_dim": 16, "projection_hidden_size": 16}),
                             "--max_steps", "3", "--eval_steps", "3"]) == 0  # fmt: skip
    results = json.loads((probe_dir / "test_results.json").read_text())
    assert results["best"]["metric"] == "val_balanced_accuracy"
    assert "test_balanced_accuracy" in results["metrics"]
    config = yaml.safe_load((probe_dir / "run_config.yaml").read_text())
    assert config["target"] == ["DX_GROUP"] and config["problem_type"] == "single_label_classification"
    probe = load_file(probe_dir / "best" / "model.safetensors")
    pretrained = load_file(pretrain_dir / "best" / "model.safetensors")
    backbone = {k.removeprefix("r2tnet.backbone."): v for k, v in probe.items() if k.startswith("r2tnet.backbone.")}
    context = {k.removeprefix("mnemodyn."): v for k, v in pretrained.items() if k.startswith("mnemodyn.")}
    assert backbone and backbone.keys() <= context.keys()
    assert all(torch.equal(v, context[k]) for k, v in backbone.items())  # frozen: the pretrained weights, unchanged
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(probe_dir / "best").id2label == {0: "ASD", 1: "TDC"}


def test_the_default_recipe_fits_the_tangent_backbone_and_validates_its_start(training_shards, tmp_path, caplog):
    """`scripts/pretrain.py` with its defaults: the tangent backbone is fitted on the training subjects before step 1,
    step 0 is a candidate for best/, validation and the one test pass show the strongest baseline beside raw FC."""
    output = tmp_path / "tangent"
    with caplog.at_level("WARNING"):
        assert main("pretrain", ["--data", str(training_shards), "--output_dir", str(output), "--max_steps", "4",
                                 "--eval_steps", "2", "--subjects_per_batch", "4", "--positives", "cross_session",
                                 "--validation_segment_length", "32", "--progress", "false"]) == 0  # fmt: skip
    assert "fitted the tangent_connectome reference" in caplog.text
    record = yaml.safe_load((output / "run_config.yaml").read_text())
    assert record["backbone"] == "tangent_connectome" and record["reference_subjects"] >= 2
    logged = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    validations = [e for e in logged if "val_fingerprint_segment_rank1" in e]
    assert [e["step"] for e in validations] == [0, 2, 4]
    assert all(e["val_segment_baseline"] in ("raw", "state_centred", "tangent", "pca_removed", "pca_kept")
               for e in validations)  # fmt: skip
    best = json.loads((output / "best" / "eval_results.json").read_text())
    assert best["value"] == max(e["val_fingerprint_segment_rank1"] for e in validations)
    test = json.loads((output / "test_results.json").read_text())["metrics"]
    for key in (
        "test_fingerprint_rank1",
        "test_fingerprint_segment_rank1",
        "test_baseline_segment_rank1",
        "test_fc_rank1",
    ):
        assert key in test
    model = AutoModel.from_pretrained(output / "best")
    assert model.config.signature_dim == 12 * 11 // 2 and model.config.projection_num_layers == 0
    assert int(model.backbone.reference_scans) > 0  # the fitted reference travels with the weights


def test_a_model_that_can_memorise_its_training_subjects_is_warned_about(training_shards, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        assert main("pretrain", ["--data", str(training_shards), "--output_dir", str(tmp_path / "big"),
                                 "--backbone", "connectome_transformer", "--max_steps", "1", "--eval_steps", "1",
                                 "--subjects_per_batch", "4", "--progress", "false"]) == 0  # fmt: skip
    assert "training subjects for" in caplog.text and "can memorise" in caplog.text


def test_a_pass_with_no_training_batch_is_an_error_not_an_endless_wait():
    import itertools

    from r2tnet_hf.training.loop import _endless

    assert list(itertools.islice(_endless([{"b": 1}, {"b": 2}]), 5)) == [
        {"b": 1},
        {"b": 2},
        {"b": 1},
        {"b": 2},
        {"b": 1},
    ]
    with pytest.raises(FmriInputError, match="at least one training batch per pass"):
        next(_endless([]))

    class ResumedAtTheEndOfAnEpoch:  # the first pass is the (empty) rest of the epoch, then whole epochs
        passes = 0

        def __iter__(self):
            self.passes += 1
            return iter([] if self.passes == 1 else [{"b": self.passes}])

    assert next(_endless(ResumedAtTheEndOfAnEpoch())) == {"b": 2}
