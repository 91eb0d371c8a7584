import re
import subprocess
import sys
from pathlib import Path

import r2tnet_hf


def test_version_flag_prints_the_package_version():
    result = subprocess.run(
        [sys.executable, "-m", "r2tnet_hf.cli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"r2tnet {r2tnet_hf.__version__}"
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "(.+)"$', pyproject, re.MULTILINE)[1] == r2tnet_hf.__version__  # said twice, alike
