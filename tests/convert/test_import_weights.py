"""`r2tnet import-weights`: safe reading, a round trip into AutoModel in a fresh process, one-line refusals."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import torch

from r2tnet_hf.cli import main
from tests.models.mnemodyn.test_reference_parity import FIXTURES, read_fixture


class Arbitrary:  # an object that only unrestricted unpickling could rebuild
    def __reduce__(self):
        return (os.getcwd, ())


def lightning_checkpoint(tmp_path, extra=None):
    checkpoint, window, expected = read_fixture(FIXTURES[0])
    payload = {"state_dict": checkpoint.state_dict, "hyper_parameters": checkpoint.hyper_parameters, **(extra or {})}
    path = tmp_path / "mnemodyn.ckpt"
    torch.save(payload, path)
    return path, window, expected


def test_round_trip_into_auto_model_in_a_fresh_process(tmp_path, capsys):
    path, window, expected = lightning_checkpoint(tmp_path)
    out = tmp_path / "imported"
    assert main(["import-weights", "--from", "mnemodyn", str(path), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "README.md",
    }
    card = (out / "README.md").read_text()
    assert "github.com/vietluong2110/MnemoDyn_Draft" in card and "license: mit" in card
    torch.save(window.transpose(1, 2).clone(), tmp_path / "window.pt")
    code = (
        "import sys, torch, r2tnet_hf; from transformers import AutoModel\n"
        "m = AutoModel.from_pretrained(sys.argv[1]).eval().double()\n"
        "x = torch.load(sys.argv[2], weights_only=True)\n"
        "with torch.no_grad(): y = m(x, repetition_time=1.0).last_hidden_state\n"
        "torch.save(y, sys.argv[3])\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "window.pt"), str(tmp_path / "y.pt")],
                   check=True, env=env, cwd=Path(__file__).parents[2])  # fmt: skip
    result = torch.load(tmp_path / "y.pt", weights_only=True)
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=0)


def test_a_checkpoint_that_needs_unpickling_is_refused_in_one_line(tmp_path, capsys):
    path, _, _ = lightning_checkpoint(tmp_path, extra={"callbacks": Arbitrary()})
    out = tmp_path / "imported"
    assert main(["import-weights", "--from", "mnemodyn", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "unrestricted unpickling" in error and str(path) in error
    assert not out.exists() and not list(tmp_path.glob(".imported*")), "nothing half-written"


def test_unmapped_tensors_corrupt_and_missing_files_fail_cleanly(tmp_path, capsys):
    checkpoint, _, _ = read_fixture(FIXTURES[0])
    path = tmp_path / "extra.ckpt"
    torch.save({"state_dict": {**checkpoint.state_dict, "model.head.weight": torch.zeros(1)},
                "hyper_parameters": checkpoint.hyper_parameters}, path)  # fmt: skip
    assert main(["import-weights", "--from", "mnemodyn", str(path), "--out", str(tmp_path / "a")]) == 2
    assert "1 unmapped (head.weight)" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(pickle.dumps([1, 2])[:5])
    assert main(["import-weights", "--from", "mnemodyn", str(corrupt), "--out", str(tmp_path / "b")]) == 2
    assert "unreadable" in capsys.readouterr().err
    assert (
        main(["import-weights", "--from", "mnemodyn", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "c")]) == 2
    )
    assert "no such file" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")


def test_settings_fill_what_the_checkpoint_does_not_record(tmp_path):
    checkpoint, _, _ = read_fixture(FIXTURES[0])
    path = tmp_path / "bare.pt"
    torch.save(checkpoint.state_dict, path)  # a bare state dict: no hyperparameters
    assert main(["import-weights", "--from", "mnemodyn", str(path), "--out", str(tmp_path / "x")]) == 2
    assert main(["import-weights", "--from", "mnemodyn", str(path), "--out", str(tmp_path / "y"),
                 "--set", "num_frames=32", "--set", "use_residual=false", "--set", "spline=linear"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "y" / "config.json").read_text())["num_frames"] == 32
