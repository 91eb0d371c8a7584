"""Each shipped metric module loads by path alone: `evaluate.load` of a copy of its folder in another place, in a fresh
process with an empty `evaluate` modules cache, offline (the contract stated in `r2tnet_hf.evaluation.metric_support`).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from r2tnet_hf.evaluation import METRIC_NAMES, load_metric, metric_path

NAN = float("nan")
INPUTS = {
    "pearson_r": {"predictions": [1.0, 2.5, 2.0, 5.0, 7.0], "references": [1.5, 2.0, 3.0, NAN, 6.0]},
    "mse": {"predictions": [1.0, 2.5, 2.0, 5.0], "references": [1.5, 2.0, 3.0, NAN]},
    "mae": {"predictions": [1.0, 2.5, 2.0, 5.0], "references": [1.5, 2.0, 3.0, NAN]},
    "balanced_accuracy": {"predictions": [0, 0, 1, 1, 2], "references": [0, 1, 1, 1, 2]},
    "auroc": {"prediction_scores": [0.1, 0.8, 0.4, 0.9, 0.4], "references": [0, 1, 0, 1, 1]},
    "fingerprint": {
        "predictions": [[1.0, 0.0, 0.5, 0.2], [0.0, 1.0, 0.3, 0.1], [0.2, 0.1, 1.0, 0.0]],
        "references": [[0.9, 0.1, 0.4, 0.2], [0.1, 0.2, 1.0, 0.0], [0.1, 0.9, 0.3, 0.2]],
    },
}

LOAD_EACH_COPY = """
import json, sys
import evaluate

folders, inputs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({name: evaluate.load(folder).compute(**inputs[name]) for name, folder in folders.items()}))
"""


def test_every_metric_loads_by_path_from_a_copy_of_its_folder_alone(tmp_path):
    assert set(INPUTS) == set(METRIC_NAMES)
    folders = {}
    for name in METRIC_NAMES:
        folders[name] = str(shutil.copytree(metric_path(name), tmp_path / "elsewhere" / name))
        assert sorted(path.name for path in (tmp_path / "elsewhere" / name).iterdir()) == [f"{name}.py"]
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    environment.update(HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_EACH_COPY, json.dumps(folders), json.dumps(INPUTS)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    for name in METRIC_NAMES:
        assert loaded[name] == pytest.approx(load_metric(name).compute(**INPUTS[name]), nan_ok=True)
        # the module evaluate imported is the copy, and nothing was copied beside it
        (meta,) = (tmp_path / "hf-home" / "modules" / "evaluate_modules" / "metrics" / name).glob(f"*/{name}.json")
        assert json.loads(meta.read_text())["original file path"] == str(tmp_path / "elsewhere" / name / f"{name}.py")
        assert sorted(path.name for path in meta.parent.iterdir() if path.suffix == ".py") == [
            "__init__.py",
            f"{name}.py",
        ]
