"""What pyproject.toml cannot say: the model-card templates live in the top-level `model_cards/` folder and ship inside
the package as `r2tnet_hf.model_cards` (package data, read with `importlib.resources`). Everything else is in
pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["r2tnet_hf*"]), "r2tnet_hf.model_cards"],
    package_dir={"r2tnet_hf.model_cards": "model_cards"},
)
