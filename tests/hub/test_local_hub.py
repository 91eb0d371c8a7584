"""Publishing to, and loading from, a real Hub-API server over HTTP with the stock huggingface_hub client."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, constants

from r2tnet_hf.cli import main
from r2tnet_hf.hub import check_card_offline, load_model
from r2tnet_hf.hub.publish import publish_run

from .conftest import NUM_ROIS
from .local_hub import LocalHub

TOKEN = "hf_localhubTestToken0123456789secret"


@pytest.fixture
def hub(monkeypatch):
    # huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_DISABLE_XET at import: set the constants it reads
    # at call time for this process, and the environment for child processes.
    try:
        server = LocalHub(TOKEN)
    except OSError as error:
        pytest.skip(f"cannot start the local Hub server on 127.0.0.1: {error}")
    with server:
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        # hf_hub_url formats this template (built from HF_ENDPOINT at import), so it must follow the endpoint too.
        template = server.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


def fresh_process_outputs(hub, tmp_path, repo_id: str, values: np.ndarray) -> dict:
    """Load `repo_id` by id through the server in a new Python process (empty cache) and encode `values`."""
    np.save(tmp_path / "values.npy", values)
    script = textwrap.dedent(
        f"""
        import json, numpy as np, torch
        import r2tnet_hf
        from huggingface_hub import ModelCard
        from transformers import AutoFeatureExtractor, AutoModel
        model = AutoModel.from_pretrained({repo_id!r}).eval()
        processor = AutoFeatureExtractor.from_pretrained({repo_id!r})
        batch = processor(np.load({str(tmp_path / "values.npy")!r}), repetition_time=0.8, return_tensors="pt")
        with torch.no_grad():
            signature = model(**batch).signature
        card = ModelCard.load({repo_id!r})
        print(json.dumps({{"signature": signature.tolist(), "class": type(model).__name__,
                          "processor": type(processor).__name__, "eval_results": [
                          [r.dataset_split, r.metric_type, r.metric_value] for r in card.data.eval_results]}}))
        """
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_publish_then_load_by_repo_id_in_a_fresh_process(hub, pretrain_run, tmp_path, capsys):
    repo_id = "lab/r2tnet-tiny"
    assert main(["publish", str(pretrain_run), "--repo-id", repo_id]) == 0
    captured = capsys.readouterr()
    assert TOKEN not in captured.out and TOKEN not in captured.err
    assert "val_fingerprint_rank1" in captured.out

    # One commit, with every file, through the LFS path for the weights; every write carried the token.
    commits = hub.commits(repo_id)
    assert len(commits) == 1
    assert sorted(commits[0]["files"]) == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    assert sum(1 for method, path, _ in hub.requests if method == "POST" and "/commit/" in path) == 1
    assert any(method == "PUT" and path.startswith("/lfs-upload/") for method, path, _ in hub.requests)
    writes = [(path, auth) for method, path, auth in hub.requests if method == "POST" and "validate-yaml" not in path]
    assert writes and all(auth for _, auth in writes)  # the LFS PUT goes to a one-time URL, like a presigned one
    assert commits[0]["files"]["model.safetensors"] == (pretrain_run / "best" / "model.safetensors").read_bytes()
    check_card_offline(commits[0]["files"]["README.md"].decode())

    # Outputs identical to the model before the push.
    values = np.random.default_rng(0).standard_normal((NUM_ROIS, 60)).astype(np.float32)
    local = load_model(pretrain_run / "best")
    from r2tnet_hf.hub import load_processor

    with torch.no_grad():
        expected = local(**load_processor(pretrain_run / "best")(values, repetition_time=0.8, return_tensors="pt"))
    loaded = fresh_process_outputs(hub, tmp_path, repo_id, values)
    assert loaded["class"] == "R2TNetModel" and loaded["processor"] == "FmriProcessor"
    assert np.array_equal(np.asarray(loaded["signature"], dtype=np.float32), expected.signature.numpy())
    # ModelCard.load through the server shows the run's metrics.
    shown = {(split, metric): value for split, metric, value in loaded["eval_results"]}
    assert shown == {
        ("validation", "fingerprint_rank1"): 0.86,
        ("validation", "fc_rank1"): 0.93,
        ("validation", "loss"): 1.2,
    }


def test_republish_is_one_more_commit_and_private_repos_need_the_token(hub, finetune_run):
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    publish_run(finetune_run, "lab/r2tnet-head", private=True, api=api)
    result = publish_run(finetune_run, "lab/r2tnet-head", private=True, api=api)  # create_repo exist_ok (409)
    assert len(hub.commits("lab/r2tnet-head")) == 2 and result.commit_oid == hub.repos["lab/r2tnet-head"].head
    assert hub.repos["lab/r2tnet-head"].private
    anonymous = HfApi(endpoint=hub.endpoint, token=False)
    from huggingface_hub.errors import RepositoryNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("lab/r2tnet-head")
    assert api.model_info("lab/r2tnet-head").sha == result.commit_oid


def test_dry_run_matches_the_upload_file_for_file(hub, finetune_run, tmp_path):
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    out = tmp_path / "dry"
    assert main(["publish", str(finetune_run), "--repo-id", "lab/head", "--dry-run", str(out)]) == 0
    assert not hub.repos  # nothing uploaded
    publish_run(finetune_run, "lab/head", api=api)
    uploaded = hub.commits("lab/head")[0]["files"]
    local = {p.name: p.read_bytes() for p in out.iterdir()}
    assert local == uploaded


def test_commands_take_a_repo_id_and_push_with_card_is_one_commit(hub, finetune_run, tmp_path, monkeypatch):
    from r2tnet_hf.data.synthetic import make_synthetic_cohort
    from r2tnet_hf.hub import load_processor, push_with_card

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    model, processor = load_model(finetune_run / "best"), load_processor(finetune_run / "best")
    push_with_card(model, processor, "lab/pushed", run_dir=finetune_run, api=api)
    (commit,) = hub.commits("lab/pushed")
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json"} == set(commit["files"])

    make_synthetic_cohort(tmp_path / "scans", subjects=2, sessions=1, rois=NUM_ROIS, frames=40, task=False)
    by_id, by_folder = tmp_path / "by_id.csv", tmp_path / "by_folder.csv"
    manifest = str(tmp_path / "scans" / "manifest.tsv")
    assert main(["predict", "--model", "lab/pushed", "--input", manifest, "--output", str(by_id), "--quiet"]) == 0
    assert (tmp_path / "cache" / "models--lab--pushed").is_dir()  # through the Hub cache layout
    local = str(finetune_run / "best")
    assert main(["predict", "--model", local, "--input", manifest, "--output", str(by_folder), "--quiet"]) == 0
    assert by_id.read_text() == by_folder.read_text()


def test_a_rejected_token_is_one_line_and_never_printed(hub, pretrain_run, monkeypatch, capsys):
    wrong = "hf_wrongToken_ABCDEFGHIJKLMNOP"
    monkeypatch.setenv("HF_TOKEN", wrong)
    assert main(["publish", str(pretrain_run), "--repo-id", "lab/denied"]) == 2
    captured = capsys.readouterr()
    assert "401" in captured.err and captured.err.count("\n") == 1 and "hf auth login" in captured.err
    assert wrong not in captured.out + captured.err and TOKEN not in captured.out + captured.err
    assert "lab/denied" not in hub.repos


def test_a_run_trained_by_the_loop_publishes_and_loads_by_repo_id(hub, tmp_path, capsys):
    """The real training loop's run folder (not a fake one): pretrain a few steps, publish, load by id, same outputs."""
    from transformers import AutoModel

    from r2tnet_hf.data.shards import ConvertOptions, convert
    from r2tnet_hf.data.synthetic import make_synthetic_cohort
    from r2tnet_hf.hub import load_processor
    from r2tnet_hf.training import main as train

    make_synthetic_cohort(tmp_path / "cohort", subjects=8, sessions=1, rois=12, frames=64, seed=2)
    convert(tmp_path / "cohort" / "manifest.tsv", tmp_path / "shards", ConvertOptions(), progress=False)
    run = tmp_path / "run"
    backbone = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    assert train("pretrain", ["--data", str(tmp_path / "shards"), "--output_dir", str(run),
                              "--backbone", "connectome_transformer", "--backbone_config", json.dumps({**backbone, "patch_size": 4}),
                              "--model_config", json.dumps({"signature_dim": 32, "projection_hidden_size": 32}),
                              "--validation_fraction", "0.25", "--test_fraction", "0", "--window_length", "48",
                              "--subjects_per_batch", "3", "--max_steps", "3", "--eval_steps", "3",
                              "--progress", "false"]) == 0  # fmt: skip
    recorded = json.loads((run / "best" / "eval_results.json").read_text())
    repo_id = "lab/r2tnet-trained"
    assert main(["publish", str(run), "--repo-id", repo_id]) == 0
    capsys.readouterr()
    assert len(hub.commits(repo_id)) == 1

    values = np.random.default_rng(1).standard_normal((12, 50)).astype(np.float32)
    with torch.no_grad():
        encoder = AutoModel.from_pretrained(run / "best").eval()  # the run saved R2TNetForContrastivePretraining
        expected = encoder(**load_processor(run / "best")(values, repetition_time=0.8, return_tensors="pt"))
    loaded = fresh_process_outputs(hub, tmp_path, repo_id, values)
    assert np.array_equal(np.asarray(loaded["signature"], dtype=np.float32), expected.signature.numpy())
    shown = {(split, metric): value for split, metric, value in loaded["eval_results"]}
    assert shown[("validation", "fingerprint_rank1")] == recorded["value"]


def test_an_unreachable_hub_is_one_line_with_exit_2(hub, pretrain_run, monkeypatch, capsys):
    """No server at the endpoint (a network failure, not an HTTP status): one line naming the repo and the fix."""
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", dead + "/{repo_id}/resolve/{revision}/{filename}")
    assert main(["publish", str(pretrain_run), "--repo-id", "lab/unreachable"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r2tnet publish: error: upload to lab/unreachable failed: ") and err.count("\n") == 1
    assert "Traceback" not in err and "--dry-run" in err


def test_offline_mode_is_one_line_with_the_fix(hub, pretrain_run, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["publish", str(pretrain_run), "--repo-id", "lab/offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HF_HUB_OFFLINE" in err
