"""What every weight import shares: a safe checkpoint reader, name-by-name mapping, and the output folder.

A reference checkpoint is read with `torch.load(weights_only=True)`, which unpickles only tensors, containers and
primitive values. Lightning checkpoints also hold their hyperparameters as `AttributeDict` (a `dict` subclass) and
sometimes an `argparse.Namespace`; those two names, and only those, are let through as plain stand-ins defined
here, so nothing of the checkpoint's own code ever runs. Anything else that needs unpickling is refused in one line.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.shards import sha256_file
from ..errors import FmriInputError


class WeightImportError(FmriInputError):
    """A checkpoint that cannot be imported: unreadable, unsafe, or with tensors that do not map one to one."""


class _StandInDict(dict):
    """Stands in for Lightning's `AttributeDict` (a dict with attribute access) while unpickling."""


class _StandInNamespace:
    """Stands in for `argparse.Namespace` while unpickling: its state becomes attributes, nothing runs."""

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {})


_STAND_INS = [
    (_StandInDict, "lightning.fabric.utilities.data.AttributeDict"),
    (_StandInDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (_StandInDict, "lightning_fabric.utilities.data.AttributeDict"),
    (_StandInNamespace, "argparse.Namespace"),
]


@dataclass
class ReferenceCheckpoint:
    """A reference checkpoint as read: its tensors, its hyperparameters (if any) and where it came from."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict = field(default_factory=dict)
    sha256: str = ""


def _plain(value):
    if isinstance(value, _StandInNamespace):
        return {key: _plain(item) for key, item in vars(value).items()}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def load_reference_checkpoint(path: str | os.PathLike) -> ReferenceCheckpoint:
    """Read a Lightning `.ckpt` (`{"state_dict": ..., "hyper_parameters": ...}`) or a bare state dict, safely.

    Raises:
        `WeightImportError`: missing, empty or corrupt file; a pickle that needs anything beyond tensors, containers,
            primitives and the two stand-ins; or no tensors at all.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightImportError.for_source(path, expected="a checkpoint file", found="no such file")
    if path.stat().st_size == 0:
        raise WeightImportError.for_source(path, expected="a checkpoint file", found="an empty file")
    try:
        with torch.serialization.safe_globals(_STAND_INS):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise WeightImportError.for_source(
                path,
                expected="a checkpoint of tensors and plain values (torch.load weights_only=True)",
                found=f"objects that need unrestricted unpickling ({refused.group(1)}), refused",
            ) from None
        raise WeightImportError.for_source(
            path, expected="a torch checkpoint (.ckpt, .pt, .pth)", found="an unreadable file (truncated or corrupt)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightImportError.for_source(
            path, expected="a torch checkpoint (.ckpt, .pt, .pth)", found=f"an unreadable file ({message[:200]})"
        ) from None
    hyper_parameters: dict = {}
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        state_dict = loaded["state_dict"]
        hyper_parameters = _plain(loaded.get("hyper_parameters") or {})
    elif isinstance(loaded, dict):
        state_dict = loaded
    else:
        raise WeightImportError.for_source(
            path, expected="a state dict or a Lightning checkpoint", found=f"a {type(loaded).__name__}"
        )
    tensors = {key: value for key, value in state_dict.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise WeightImportError.for_source(path, expected="tensors in the state dict", found="none")
    not_tensors = sorted(set(state_dict) - set(tensors))
    if not_tensors:
        raise WeightImportError.for_source(
            path, expected="only tensors in the state dict", found=f"non-tensor entries {not_tensors[:5]}"
        )
    return ReferenceCheckpoint(path, tensors, dict(hyper_parameters), sha256_file(path))


def strip_prefix(state_dict: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Drop the first of `prefixes` that every key starts with (e.g. Lightning's `model.`), if any."""
    for prefix in prefixes:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            return {key[len(prefix) :]: value for key, value in state_dict.items()}
    return state_dict


def map_state_dict(
    source: dict[str, torch.Tensor],
    rename: Callable[[str], str | None],
    target: dict[str, torch.Tensor],
    source_name: str,
    transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Map every tensor of `source` by name onto the keys of `target` (a model's `state_dict()`).

    `rename(key)` gives the target name, or `None` for a tensor the reference keeps but has no weight (a buffer
    it recomputes); `transform(target_key, tensor)` may reshape a tensor. Fails, listing them, on source tensors that
    map to no target key, target keys that nothing maps to, and shape mismatches.
    """
    mapped: dict[str, torch.Tensor] = {}
    unmapped, mismatched = [], []
    for key, tensor in source.items():
        name = rename(key)
        if name is None:
            continue
        if name not in target:
            unmapped.append(key)
            continue
        value = transform(name, tensor) if transform is not None else tensor
        if tuple(value.shape) != tuple(target[name].shape):
            mismatched.append(f"{key} {tuple(value.shape)} -> {name} {tuple(target[name].shape)}")
            continue
        mapped[name] = value.to(target[name].dtype).contiguous()
    missing = sorted(set(target) - set(mapped))
    problems = []
    if unmapped:
        problems.append(
            f"{len(unmapped)} unmapped ({', '.join(sorted(unmapped)[:8])}{' …' if len(unmapped) > 8 else ''})"
        )
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:8])}{' …' if len(missing) > 8 else ''})")
    if mismatched:
        problems.append(f"{len(mismatched)} of another shape ({'; '.join(mismatched[:4])})")
    if problems:
        raise WeightImportError.for_source(
            source_name, expected="every tensor mapped one to one onto the model", found=", ".join(problems)
        )
    return mapped


def write_folder(out_dir: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Build the output folder in a temporary sibling with `write(folder)`, then move it into place.

    A failure leaves nothing behind; an existing non-empty `out_dir` is refused rather than overwritten.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise WeightImportError.for_source(out_dir, expected="a new or empty output folder", found="existing files")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write(staging)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


__all__ = [
    "ReferenceCheckpoint",
    "WeightImportError",
    "load_reference_checkpoint",
    "map_state_dict",
    "strip_prefix",
    "write_folder",
]
