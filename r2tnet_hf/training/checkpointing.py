"""Checkpoints and the best model, written atomically.

`save_checkpoint` runs `accelerator.save_state` into a hidden folder and renames it to `checkpoints/step_NNNNNN`
once every process has written its part, so a folder with that name is always complete. Model and optimizer go
through Accelerate (safetensors for weights; `torch.load(weights_only=True)` for the rest; with FSDP, sharded
`torch.distributed.checkpoint` folders whose metadata is checked with an allow-list unpickler); the loop's own state
(step, best metric, data-stream position) is JSON beside them, so nothing is unpickled on resume.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import FmriInputError
from ..utils import atomic_write_text

CHECKPOINT_PREFIX = "step_"
LOOP_STATE = "loop_state.json"


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:06d}"


RESUME_FIX = "resume from an earlier checkpoint (--resume_from_checkpoint OUTPUT/checkpoints/step_N) or start fresh"


def read_loop_state(path: Path) -> dict:
    """A checkpoint's loop_state.json: the step, the data-stream position and the best metric so far."""
    from ..weight_files import read_json_object

    state = read_json_object(path / LOOP_STATE, "the loop state saved with the checkpoint (JSON object)", RESUME_FIX)
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise FmriInputError.for_source(
            path / LOOP_STATE, expected="step as a count of optimizer steps", found=f"{step!r:.40}", hint=RESUME_FIX
        )
    return state


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (by the step recorded inside, not by the folder name)."""
    folder = output_dir / "checkpoints"
    found = []
    for path in folder.glob(f"{CHECKPOINT_PREFIX}*") if folder.is_dir() else []:
        state = path / LOOP_STATE
        if state.is_file():
            found.append((read_loop_state(path)["step"], path))
    return [path for _, path in sorted(found)]


def resolve_checkpoint(output_dir: Path, requested: str) -> Path:
    """`latest` → the newest complete checkpoint of the run; otherwise the given folder, checked."""
    if requested == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise FmriInputError.for_source(
                output_dir / "checkpoints", expected="a checkpoint to resume from", found="none"
            )
        return checkpoints[-1]
    path = Path(requested)
    if not (path / LOOP_STATE).is_file():
        raise FmriInputError.for_source(path, expected=f"a checkpoint folder with {LOOP_STATE}", found="none")
    return path


def save_checkpoint(accelerator, output_dir: Path, step: int, loop_state: dict, keep: int) -> Path:
    final = checkpoint_dir(output_dir, step)
    staging = final.with_name(f".tmp-{final.name}")
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_text(staging / LOOP_STATE, json.dumps(loop_state, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path, reference: dict | None = None) -> dict:
    """Check every piece of the checkpoint (`check_checkpoint`), then restore it; returns the loop state."""
    state = check_checkpoint(accelerator, path, reference)
    accelerator.load_state(str(path))
    return state


def check_checkpoint(accelerator, path: Path, reference: dict | None = None) -> dict:
    """Every piece of state an exact resume needs, present and readable, before Accelerate reads any of it.

    Accelerate's `load_state` skips an unreadable RNG state with an INFO log (the run then continues with other random
    numbers than an uninterrupted one) and meets any other bad file with a traceback. Checked here, for every object
    the accelerator will restore:

    - `loop_state.json`: a JSON object with the step, and `data` (the stream or sampler position) and `best` shaped as
      `reference` (the loop state this run would save) is;
    - each prepared model's `model[_i].safetensors`: a consistent header, and every tensor named and shaped as the
      model's (a changed architecture flag is caught here); with FSDP, the sharded `pytorch_model_fsdp_i/` and
      `optimizer_i/` folders of `torch.distributed.checkpoint` (`_check_sharded_folder`: only DCP's metadata classes in
      `.metadata`, every shard file there and long enough; the model's tensors named and shaped as this run's);
    - each optimizer's `optimizer[_i].bin`, each scheduler's `scheduler[_i].bin`, the grad scaler's `scaler.pt`, and the
      registered custom objects' `custom_checkpoint_i.pkl`: readable with `weights_only=True`, the optimizer's parameter
      groups and state shapes matching the model's;
    - `random_states_i.pkl` for every process of this run (and none for processes this run does not have): Python,
      NumPy and torch generator states that those libraries accept.

    Raises:
        `FmriInputError` naming the file in the checkpoint folder, the reason, and the fix (`RESUME_FIX`).
    """
    from accelerate.utils import DistributedType

    path = Path(path)
    state = read_loop_state(path)
    _check_like(path / LOOP_STATE, state, reference or {}, "")
    if accelerator.distributed_type == DistributedType.FSDP:
        for index, model in enumerate(accelerator._models):
            _check_sharded_model(path, index, model)
        for index, _ in enumerate(accelerator._optimizers):
            _check_sharded_folder(path / f"optimizer_{index}", "the sharded optimizer state of the checkpoint")
    elif accelerator.distributed_type not in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
        for index, model in enumerate(accelerator._models):
            _check_model_file(path, index, accelerator.unwrap_model(model))
        for index, optimizer in enumerate(accelerator._optimizers):
            _check_optimizer_file(path, index, optimizer)
    for index, _ in enumerate(accelerator._schedulers):
        name = "scheduler.bin" if index == 0 else f"scheduler_{index}.bin"
        _load(path / name, "a scheduler state")
    if getattr(accelerator, "scaler", None) is not None:
        _load(path / "scaler.pt", "a grad-scaler state")
    for index, _ in enumerate(accelerator._custom_objects):
        _load(path / f"custom_checkpoint_{index}.pkl", "a registered object's state")
    for index in range(accelerator.num_processes):
        _check_random_states(path / f"random_states_{index}.pkl")
    extra = path / f"random_states_{accelerator.num_processes}.pkl"
    if extra.is_file():
        written = len(list(path.glob("random_states_*.pkl")))
        raise FmriInputError.for_source(
            extra, expected=f"the RNG states of {accelerator.num_processes} processes (this run)",
            found=f"a checkpoint written by {written} processes", hint="resume with as many processes as wrote it, or " + RESUME_FIX,
        )  # fmt: skip
    return state


def _load(path: Path, what: str):
    from ..weight_files import load_torch_state

    return load_torch_state(path, what, hint=RESUME_FIX)


def _check_like(path: Path, value, reference, where: str) -> None:
    """`value` has the keys of `reference` (recursively), with numbers where it has numbers."""
    if isinstance(reference, dict):
        if not isinstance(value, dict) or not set(reference) <= set(value):
            missing = sorted(set(reference) - set(value)) if isinstance(value, dict) else None
            raise FmriInputError.for_source(
                path, expected=f"{where or 'the loop state'} with keys {sorted(reference)}",
                found=f"missing {missing}" if missing is not None else f"{value!r:.60}", hint=RESUME_FIX,
            )  # fmt: skip
        for key, item in reference.items():
            _check_like(path, value[key], item, f"{where}.{key}" if where else key)
    elif (
        isinstance(reference, int | float)
        and not isinstance(reference, bool)
        and value is not None
        and (not isinstance(value, int | float) or isinstance(value, bool))
    ):
        raise FmriInputError.for_source(path, expected=f"{where} as a number", found=f"{value!r:.60}", hint=RESUME_FIX)


def _check_model_file(path: Path, index: int, model) -> None:
    from ..weight_files import read_safetensors_header

    name = "model.safetensors" if index == 0 else f"model_{index}.safetensors"
    file = path / name
    if not file.is_file():
        raise FmriInputError.for_source(
            file, expected="the model weights of the checkpoint", found="no such file", hint=RESUME_FIX
        )
    try:
        header = read_safetensors_header(file)
    except FmriInputError as error:
        raise FmriInputError(f"{error}; {RESUME_FIX}", source=file) from None
    expected = model.state_dict()
    for tensor, (_, shape) in header.items():
        if tensor not in expected:
            raise FmriInputError.for_source(
                file, expected=f"tensors of {type(model).__name__}", found=f"an unknown tensor {tensor}",
                hint="the run's model flags differ from the checkpoint's; " + RESUME_FIX,
            )  # fmt: skip
        if list(expected[tensor].shape) != shape:
            raise FmriInputError.for_source(
                file, expected=f"{tensor} of shape {list(expected[tensor].shape)} (this run's model)",
                found=f"shape {shape}", hint="the run's model flags differ from the checkpoint's; " + RESUME_FIX,
            )  # fmt: skip
    # a tensor tied to a saved one (same storage) is not written twice
    saved_storages = {expected[t].data_ptr() for t in header}
    missing = [t for t, tensor in expected.items() if t not in header and tensor.data_ptr() not in saved_storages]
    if missing:
        raise FmriInputError.for_source(
            file, expected=f"every tensor of {type(model).__name__}", found=f"{len(missing)} missing ({missing[0]})",
            hint=RESUME_FIX,
        )  # fmt: skip


# What a torch.distributed.checkpoint `.metadata` pickle may name: DCP's own metadata records, torch sizes, dtypes and
# layouts, and the checkpoint's path.
_DCP_GLOBALS = {
    ("torch.distributed.checkpoint.metadata", name)
    for name in (
        "Metadata", "MetadataIndex", "StorageMeta", "TensorStorageMetadata", "BytesStorageMetadata",
        "ChunkStorageMetadata", "TensorProperties", "_MEM_FORMAT_ENCODING",
    )
} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
    ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"), ("pathlib", "PureWindowsPath"), ("collections", "OrderedDict"),
}  # fmt: skip


def read_dcp_metadata(file: Path):
    """A `torch.distributed.checkpoint` folder's `.metadata`, unpickled with only `_DCP_GLOBALS` (and torch dtypes)
    allowed, the way `weights_only=True` reads a tensor file. torch's own reader unpickles this file unrestricted, so a
    sharded checkpoint is read here first: one that passes holds nothing but DCP's records."""
    import pickle

    import torch
    from torch.distributed.checkpoint.metadata import Metadata

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in _DCP_GLOBALS or (
                module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
            ):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"{module}.{name} is not a DCP metadata class")

    try:
        with open(file, "rb") as handle:
            metadata = Restricted(handle).load()
    except FileNotFoundError:
        raise FmriInputError.for_source(
            file, expected="the metadata of a sharded (DCP) checkpoint", found="no such file", hint=RESUME_FIX
        ) from None
    except Exception as error:  # a corrupt or foreign pickle: whatever the unpickler met
        raise FmriInputError.for_source(
            file, expected="DCP checkpoint metadata (only torch.distributed.checkpoint records)",
            found=f"{type(error).__name__}: {' '.join(str(error).split())[:120]}", hint=RESUME_FIX,
        ) from None  # fmt: skip
    if not isinstance(metadata, Metadata):
        raise FmriInputError.for_source(
            file, expected="DCP checkpoint metadata", found=type(metadata).__name__, hint=RESUME_FIX
        )
    return metadata


def _check_sharded_folder(folder: Path, what: str):
    """A DCP folder: its metadata (`read_dcp_metadata`), and every shard file it points to, present and long enough."""
    metadata = read_dcp_metadata(folder / ".metadata")
    sizes: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        sizes[info.relative_path] = max(sizes.get(info.relative_path, 0), info.offset + info.length)
    for name, needed in sorted(sizes.items()):
        file = folder / name
        found = file.stat().st_size if file.is_file() else None
        if found is None or found < needed:
            raise FmriInputError.for_source(
                file, expected=f"{what}: a shard file of at least {needed} bytes",
                found="no such file" if found is None else f"{found} bytes", hint=RESUME_FIX,
            )  # fmt: skip
    return metadata


def _check_sharded_model(path: Path, index: int, model) -> None:
    """The sharded model of an FSDP checkpoint: every tensor of the model (full shapes), no other."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    folder = path / f"pytorch_model_fsdp_{index}"
    metadata = _check_sharded_folder(folder, "the sharded model weights of the checkpoint")
    saved = {
        key.removeprefix("model."): list(item.size)
        for key, item in metadata.state_dict_metadata.items()
        if isinstance(item, TensorStorageMetadata)
    }
    expected = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    hint = "the run's model flags differ from the checkpoint's; " + RESUME_FIX
    for name, shape in saved.items():
        if name not in expected:
            raise FmriInputError.for_source(
                folder, expected=f"tensors of {type(model).__name__}", found=f"an unknown tensor {name}", hint=hint
            )
        if expected[name] != shape:
            raise FmriInputError.for_source(
                folder, expected=f"{name} of shape {expected[name]} (this run's model)", found=f"shape {shape}",
                hint=hint,
            )  # fmt: skip
    missing = sorted(set(expected) - set(saved))
    if missing:
        raise FmriInputError.for_source(
            folder, expected=f"every tensor of {type(model).__name__}", found=f"{len(missing)} missing ({missing[0]})",
            hint=RESUME_FIX,
        )  # fmt: skip


def _check_optimizer_file(path: Path, index: int, optimizer) -> None:
    name = "optimizer.bin" if index == 0 else f"optimizer_{index}.bin"
    file = path / name
    state = _load(file, "the optimizer state of the checkpoint")
    groups = getattr(optimizer, "optimizer", optimizer).param_groups
    if not isinstance(state, dict) or not isinstance(state.get("param_groups"), list) or "state" not in state:
        raise FmriInputError.for_source(
            file, expected="an optimizer state (state, param_groups)", found=f"{type(state).__name__}", hint=RESUME_FIX
        )
    saved = [len(group.get("params", [])) for group in state["param_groups"]]
    if saved != [len(group["params"]) for group in groups]:
        raise FmriInputError.for_source(
            file, expected=f"parameter groups of {[len(g['params']) for g in groups]} parameters (this run's model)",
            found=f"{saved}", hint="the run's model flags differ from the checkpoint's; " + RESUME_FIX,
        )  # fmt: skip
    parameters = [p for group in groups for p in group["params"]]
    ids = [i for group in state["param_groups"] for i in group["params"]]
    shapes = dict(zip(ids, (list(p.shape) for p in parameters), strict=True))
    for key, values in state["state"].items():
        for field, value in values.items() if isinstance(values, dict) else ():
            if hasattr(value, "shape") and value.ndim > 0 and key in shapes and list(value.shape) != shapes[key]:
                raise FmriInputError.for_source(
                    file, expected=f"{field} of parameter {key} shaped {shapes[key]}", found=f"{list(value.shape)}",
                    hint="the run's model flags differ from the checkpoint's; " + RESUME_FIX,
                )  # fmt: skip


def _check_random_states(file: Path) -> None:
    """The RNG states Accelerate restores: each library must accept its state (tried, then undone)."""
    import random

    import numpy as np
    import torch
    from accelerate.utils import get_torch_accelerator_backend

    states = _load(file, "the RNG states of one process")
    keys = ("random_state", "numpy_random_seed", "torch_manual_seed")
    device_type, _ = get_torch_accelerator_backend()
    if device_type is not None:  # Accelerate saves the accelerator's generator too, and skips it silently when absent
        keys += (f"torch_{device_type}_manual_seed",)
    missing = [key for key in keys if not isinstance(states, dict) or key not in states]
    if missing:
        raise FmriInputError.for_source(
            file, expected=f"RNG states {list(keys)}", found=f"missing {missing}", hint=RESUME_FIX
        )
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        random.setstate(states["random_state"])
        np.random.set_state(states["numpy_random_seed"])
        torch.set_rng_state(states["torch_manual_seed"])
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise FmriInputError.for_source(
            file, expected="RNG states that random, numpy and torch accept",
            found=f"{type(error).__name__}: {' '.join(str(error).split())[:120]}", hint=RESUME_FIX,
        ) from None  # fmt: skip
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


def save_best(model, processor, output_dir: Path, eval_results: dict, state_dict: dict | None = None) -> Path:
    """`save_pretrained` model and processor plus `eval_results.json` into OUTPUT/best/, replacing it atomically."""
    return save_pretrained_atomic(model, processor, output_dir / "best", eval_results, state_dict)


def save_pretrained_atomic(
    model, processor, final: Path, eval_results: dict | None = None, state_dict: dict | None = None
) -> Path:
    """`save_pretrained` model and processor (and `eval_results.json`) into `final`, replacing it atomically.

    `state_dict`: the full weights of a sharded model (gathered by every process), written as safetensors like any
    other model's."""
    output_dir = final.parent
    staging = output_dir / f".tmp-{final.name}"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, state_dict=state_dict)
    processor.save_pretrained(staging)
    if eval_results is not None:
        (staging / "eval_results.json").write_text(json.dumps(eval_results, indent=2) + "\n")
    previous = output_dir / f".old-{final.name}"
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        os.replace(final, previous)
    os.replace(staging, final)
    shutil.rmtree(previous, ignore_errors=True)
    return final
