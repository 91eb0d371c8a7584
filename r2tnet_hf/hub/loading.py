"""Loading published models with checks: a clear `FmriInputError`, never a silent random initialisation.

Plain `AutoModel.from_pretrained` in transformers 5 raises `OSError` ("does not appear to have a file named
model.safetensors ...") when the weights are missing and `ValueError` ("Unrecognized model ...") for an unknown
`model_type`; but loading a *head* class from an encoder checkpoint (or any checkpoint missing some of the class's
tensors) only logs a warning and initialises those tensors at random. `load_model` refuses all three.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import FmriInputError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def resolve_model_folder(name_or_path: str | os.PathLike) -> Path:
    """A local folder as is; otherwise a Hub repo id, downloaded (or taken from the cache) with `snapshot_download`."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise FmriInputError.for_source(path, expected="a model folder or a Hub repo id", found="a file")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(str(name_or_path), allow_patterns=["*.json", "*.safetensors", "*.md", "atlas/*"]))
    except (RepositoryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FmriInputError.for_source(
            name_or_path,
            expected="a local model folder or a reachable Hub repo id",
            found=f"neither ({type(error).__name__}: {first_line})",
        ) from error


def check_model_folder(folder: Path) -> dict:
    """Check config.json (a registered `model_type`) and the safetensors weights; return the config dict."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    import r2tnet_hf  # noqa: F401  (registers our model types)

    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FmriInputError.for_source(folder, expected="a model folder with config.json", found="no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FmriInputError.for_source(config_path, expected="valid JSON", found=f"a parse error ({error})") from error
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        ours = sorted(t for t in CONFIG_MAPPING if CONFIG_MAPPING[t].__module__.startswith("r2tnet_hf"))
        raise FmriInputError.for_source(
            folder,
            expected=f"a model_type registered by r2tnet_hf ({', '.join(ours)})",
            found=f"model_type {model_type!r}" if model_type else "no model_type in config.json",
            hint="is this an r2tnet_hf model, saved by a newer version?",
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        found = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise FmriInputError.for_source(
            folder,
            expected="safetensors weights (model.safetensors)",
            found=f"only {', '.join(found)} (pickled weights are not loaded)" if found else "no weights file",
            hint="refusing to return a randomly initialised model",
        )
    return config


def load_model(name_or_path: str | os.PathLike, expected_class=None, **kwargs):
    """Load an r2tnet_hf model from a folder or a Hub repo id, checking it first.

    Args:
        name_or_path: model folder, or Hub repo id.
        expected_class (`type`, *optional*): the class to build (e.g. `R2TNetForPhenotypePrediction`, or
            `R2TNetModel`, which any R2T-Net checkpoint provides). Defaults to the checkpoint's own class
            (`config.architectures[0]`), else `AutoModel`.
        **kwargs: passed to `from_pretrained` (e.g. `dtype=`).

    Raises:
        `FmriInputError` naming the folder: no config.json, an unknown `model_type`, no safetensors weights, or
        weights that do not cover every tensor of the class (which transformers would initialise at random).
    """
    from transformers import AutoModel

    import r2tnet_hf

    folder = resolve_model_folder(name_or_path)
    config = check_model_folder(folder)
    model_class = expected_class
    if model_class is None:
        architectures = config.get("architectures") or []
        model_class = getattr(r2tnet_hf, architectures[0], None) if architectures else None
        model_class = model_class or AutoModel
    from transformers.utils import logging as transformers_logging

    # transformers reports missing/unexpected tensors as a warning table; missing ones are refused below, and
    # unexpected ones (a head when only the encoder is asked for) are expected. Keep the user's output clean.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, info = model_class.from_pretrained(folder, output_loading_info=True, **kwargs)
    finally:
        transformers_logging.set_verbosity(verbosity)
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise FmriInputError.for_source(
            name_or_path,
            expected=f"weights for every tensor of {model_class.__name__}",
            found=f"{len(missing)} missing ({shown}); checkpoint class {config.get('architectures')}",
            hint="refusing a randomly initialised head",
        )
    return model.eval()


def load_processor(name_or_path: str | os.PathLike):
    """The `FmriProcessor` saved beside a model (folder or Hub repo id), or `None` if there is none."""
    from transformers import AutoFeatureExtractor

    folder = resolve_model_folder(name_or_path)
    if not (folder / "preprocessor_config.json").is_file():
        return None
    processor = AutoFeatureExtractor.from_pretrained(folder)
    return processor.resolve_atlas_file(folder) if hasattr(processor, "resolve_atlas_file") else processor


__all__ = ["check_model_folder", "load_model", "load_processor", "resolve_model_folder"]
