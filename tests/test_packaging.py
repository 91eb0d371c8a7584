"""What an installed, non-editable package needs ships in the wheel: the model-card templates and the licence."""

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a source distribution holds: the wheel is built from these alone
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "r2tnet_hf", "model_cards")


def test_card_template_lives_in_model_cards_and_is_found_through_importlib_resources():
    template = resources.files("r2tnet_hf.model_cards").joinpath("r2tnet_model_card.md")
    assert template.is_file() and template.read_text(encoding="utf-8").startswith("---\n{{ card_data }}\n---")
    assert (ROOT / "model_cards" / "r2tnet_model_card.md").is_file()
    assert not (ROOT / "r2tnet_hf" / "model_cards").exists()  # one copy, in the top-level folder


def test_licence_is_the_apache_text_with_our_copyright():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "Copyright 2026 The r2tnet_hf authors" in text
    assert "[yyyy]" not in text


def test_wheel_ships_the_card_templates_the_licence_and_every_package(tmp_path):
    pytest.importorskip("setuptools", minversion="77")  # the build backend pyproject.toml asks for, offline
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheel"
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    result = subprocess.run([*command, "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"r2tnet_hf/model_cards/__init__.py", "r2tnet_hf/model_cards/r2tnet_model_card.md"} <= names
    assert not any(name.startswith("model_cards/") for name in names)  # inside the package, not a top-level one
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    packaged = {str(path.relative_to(ROOT)) for path in (ROOT / "r2tnet_hf").rglob("*.py")}
    assert {path.replace("\\", "/") for path in packaged} <= names  # every module of every subpackage ships
