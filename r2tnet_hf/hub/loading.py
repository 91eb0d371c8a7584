"""Loading published models with checks: a clear `FmriInputError`, never a silent random initialisation.

Plain `AutoModel.from_pretrained` in transformers 5 raises `OSError` ("does not appear to have a file named
model.safetensors ...") when the weights are missing and `ValueError` ("Unrecognized model ...") for an unknown
`model_type`; but loading a *head* class from an encoder checkpoint (or any checkpoint missing some of the class's
tensors) only logs a warning and initialises those tensors at random. `load_model` refuses all three.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path

from ..errors import FmriInputError
from ..weight_files import read_json_object, read_safetensors_weights

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
    config = read_json_object(config_path, "a model config (JSON object)")
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
            hint="import a reference checkpoint with r2tnet import-weights, or re-save the model with "
            "save_pretrained(..., safe_serialization=True)"
            if found
            else "refusing to return a randomly initialised model",
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
    return from_pretrained_checked(model_class, folder, source=name_or_path, **kwargs).eval()


LOADING_KWARGS = ("dtype", "torch_dtype", "device_map", "low_cpu_mem_usage", "attn_implementation")


def from_pretrained_checked(model_class, folder, *, source=None, allow_missing: bool = False, **kwargs):
    """`model_class.from_pretrained(folder, use_safetensors=True, **kwargs)`, after every check a user's folder needs.

    The one way the package loads a model (`load_model`, training's `--init_from`, `r2tnet fingerprint`). Before
    transformers reads anything: config.json is a JSON object with a registered `model_type` whose fields have the
    types of the config class's defaults; the weights are `model.safetensors` (or a sharded index), never a pickle,
    with headers consistent with the file sizes; the model the config describes builds, and every tensor of the
    weights has the shape the config implies. After loading, tensors of the model that the weights do not hold (which
    transformers would initialise at random) are refused unless `allow_missing` (a new head on a pretrained
    encoder); a checkpoint sharing no tensor with the model is refused always.

    Raises:
        `FmriInputError` naming the file (config.json, model.safetensors) and the field or tensor at fault.
    """
    import torch
    from transformers.utils import logging as transformers_logging

    folder = resolve_model_folder(folder)
    source = folder if source is None else source
    config_dict = check_model_folder(folder)
    weights, files = read_safetensors_weights(folder)
    config_path = folder / "config.json"
    check_config_types(config_path, config_dict)
    config_kwargs = {k: v for k, v in kwargs.items() if k not in LOADING_KWARGS}
    model = _build_from_config(model_class, folder, config_kwargs)
    expected = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    prefix = getattr(model, "base_model_prefix", "")
    matched = set()
    for name, (_, shape) in weights.items():
        key = _model_key(name, expected, prefix)
        if key is None:
            continue
        matched.add(key)
        if expected[key] != shape:
            raise FmriInputError.for_source(
                config_path, expected=f"tensor {name} of shape {expected[key]} (as config.json describes the model)",
                found=f"shape {shape} in {files[0].name if len(files) == 1 else 'the weights'}",
                hint="config.json and the weights disagree: restore the config saved with these weights",
            )  # fmt: skip
    missing = sorted(set(expected) - matched)
    if missing and (not allow_missing or not matched):
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise FmriInputError.for_source(
            source,
            expected=f"weights for every tensor of {model_class.__name__}",
            found=f"{len(missing)} missing ({shown}); checkpoint class {config_dict.get('architectures')}",
            hint="refusing a randomly initialised head" if matched else "these weights are of another model",
        )  # fmt: skip
    del model
    # transformers reports missing/unexpected tensors as a warning table; missing ones were refused above, and
    # unexpected ones (a head when only the encoder is asked for) are expected. Keep the user's output clean.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        with torch.device("cpu"):
            return model_class.from_pretrained(folder, use_safetensors=True, **kwargs)
    finally:
        transformers_logging.set_verbosity(verbosity)


def _model_key(name: str, expected: dict, prefix: str) -> str | None:
    """The model's state-dict key a checkpoint tensor loads into (transformers adds or strips `base_model_prefix`)."""
    if name in expected:
        return name
    if prefix and f"{prefix}.{name}" in expected:
        return f"{prefix}.{name}"
    if prefix and name.startswith(prefix + ".") and name[len(prefix) + 1 :] in expected:
        return name[len(prefix) + 1 :]
    return None


def _build_from_config(model_class, folder: Path, config_kwargs: dict):
    """The model on the meta device from config.json: a config or model that cannot be built from the file's
    values is an error naming config.json."""
    import torch
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig, AutoModel

    config_path = folder / "config.json"
    try:
        config, unused = AutoConfig.from_pretrained(folder, return_unused_kwargs=True, **config_kwargs)
    except (TypeError, ValueError, KeyError, AttributeError, StrictDataclassError) as error:
        raise FmriInputError.for_source(
            config_path, expected="a config r2tnet_hf can build", found=_describe(error)
        ) from None

    def build():
        if hasattr(model_class, "config_class") and model_class is not AutoModel:
            return model_class(config, **unused)
        return AutoModel.from_config(config)

    try:
        try:
            with torch.device("meta"):
                model = build()
        except (NotImplementedError, RuntimeError):  # a module that computes a constant in __init__: build it for real
            model = build()
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError, ZeroDivisionError) as error:
        raise FmriInputError.for_source(
            config_path, expected=f"a config that builds {model_class.__name__}", found=_describe(error)
        ) from None
    return model


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def check_config_types(path: Path, values: dict, defaults: dict | None = None, where: str = "") -> None:
    """Every field of a config.json has the JSON type of the config class's default (a number where a number is
    expected, ...); nested configs (`backbone_config`) are checked against their own class."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    if defaults is None:
        try:
            defaults = AutoConfig.for_model(values["model_type"]).to_dict()
        except (TypeError, ValueError, KeyError, StrictDataclassError):
            return
    for key, value in values.items():
        default = defaults.get(key)
        field = f"{where}{key}"
        if default is None or value is None:
            if isinstance(value, dict) and "model_type" in value:
                check_config_types(path, value, None, f"{field}.")
            continue
        if isinstance(default, dict) and isinstance(value, dict):
            nested = None if "model_type" in value else default
            check_config_types(path, value, nested, f"{field}.")
            continue
        if not _same_json_type(value, default):
            raise FmriInputError.for_source(
                path, expected=f"{field} as {_json_type(default)} (like {default!r:.40})",
                found=f"{_json_type(value)} {value!r:.60}",
            )  # fmt: skip


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number" if isinstance(value, float) else "an integer"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _same_json_type(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, int):
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(default, list | tuple):
        return isinstance(value, list | tuple)
    return isinstance(value, type(default))


def load_processor(name_or_path: str | os.PathLike):
    """The `FmriProcessor` saved beside a model (folder or Hub repo id), or `None` if there is none; checked, and checked
    against the model of the folder (the same ROI count or volume shape)."""
    folder = resolve_model_folder(name_or_path)
    if not (folder / "preprocessor_config.json").is_file():
        return None
    processor = read_processor(folder).resolve_atlas_file(folder)
    if (folder / "config.json").is_file():
        check_processor_matches_model(folder, processor)
    return processor


def read_processor(folder: str | os.PathLike):
    """`FmriProcessor.from_pretrained(folder)` after checking preprocessor_config.json: a JSON object whose fields have
    the types `FmriProcessor` takes, with values it accepts."""
    from ..processing import FmriProcessor

    path = Path(folder) / "preprocessor_config.json"
    values = read_json_object(path, "a processor config (JSON object)")
    hints = typing.get_type_hints(FmriProcessor.__init__)
    for key, value in values.items():
        if key in hints and not _matches_hint(value, hints[key]):
            raise FmriInputError.for_source(
                path, expected=f"{key} as {hints[key]}".replace("typing.", ""), found=f"{value!r:.60}"
            )
    try:
        return FmriProcessor.from_pretrained(folder)
    except (TypeError, ValueError, KeyError) as error:
        raise FmriInputError.for_source(
            path, expected="a processor config FmriProcessor accepts", found=_describe(error)
        ) from None


def _matches_hint(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches_hint(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and (not args or all(_matches_hint(v, args[0]) for v in value))
    return True


def check_processor_matches_model(folder: Path, processor) -> None:
    """The processor of a model folder expects the input the model takes: the same ROI count (or volume shape)."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    from ..processing import FmriProcessor

    try:
        config = AutoConfig.from_pretrained(folder)
    except (TypeError, ValueError, KeyError, AttributeError, OSError, StrictDataclassError):
        return  # the model's loader names config.json's problem
    expected = FmriProcessor.from_model_config(config)
    path = folder / "preprocessor_config.json"
    if expected.input_type != processor.input_type:
        raise FmriInputError.for_source(
            path, expected=f"{expected.input_type} input, as the model in {folder} (config.json)",
            found=f"{processor.input_type} input", hint="the processor was saved for another model",
        )  # fmt: skip
    if expected.input_type == "roi" and expected.num_rois is not None and processor.num_rois != expected.num_rois:
        raise FmriInputError.for_source(
            path, expected=f"num_rois {expected.num_rois}, as the model in {folder} (config.json)",
            found=f"num_rois {processor.num_rois}", hint="the processor was saved for another model",
        )  # fmt: skip
    if expected.input_type == "volume" and expected.volume_shape and processor.volume_shape != expected.volume_shape:
        raise FmriInputError.for_source(
            path, expected=f"volume_shape {expected.volume_shape}, as the model in {folder} (config.json)",
            found=f"volume_shape {processor.volume_shape}", hint="the processor was saved for another model",
        )  # fmt: skip


__all__ = [
    "check_model_folder",
    "from_pretrained_checked",
    "load_model",
    "load_processor",
    "read_processor",
    "resolve_model_folder",
]
