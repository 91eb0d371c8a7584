"""Checkpoints and the best model, written atomically.

`save_checkpoint` runs `accelerator.save_state` into a hidden folder and renames it to `checkpoints/step_NNNNNN`
once every process has written its part, so a folder with that name is always complete. Model and optimizer go
through Accelerate (safetensors for weights; `torch.load(weights_only=True)` for the rest); the loop's own state
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


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (by the step recorded inside, not by the folder name)."""
    folder = output_dir / "checkpoints"
    found = []
    for path in folder.glob(f"{CHECKPOINT_PREFIX}*") if folder.is_dir() else []:
        state = path / LOOP_STATE
        if state.is_file():
            found.append((json.loads(state.read_text())["step"], path))
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


def load_checkpoint(accelerator, path: Path) -> dict:
    accelerator.load_state(str(path))
    return json.loads((path / LOOP_STATE).read_text())


def save_best(model, processor, output_dir: Path, eval_results: dict) -> Path:
    """`save_pretrained` model and processor plus `eval_results.json` into OUTPUT/best/, replacing it atomically."""
    return save_pretrained_atomic(model, processor, output_dir / "best", eval_results)


def save_pretrained_atomic(model, processor, final: Path, eval_results: dict | None = None) -> Path:
    """`save_pretrained` model and processor (and `eval_results.json`) into `final`, replacing it atomically."""
    output_dir = final.parent
    staging = output_dir / f".tmp-{final.name}"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
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
