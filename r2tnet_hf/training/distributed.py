"""Accelerate set-up: the run's `Accelerator` checked against the launch, and FSDP2 sharding (on GPUs, or over gloo
ranks on a CPU), with the few helpers the loop needs for a sharded model (`is_sharded`, `full_state_dict`,
`gathered_parameters`)."""

from __future__ import annotations

import os

import torch

from ..errors import FmriInputError
from .config import RunConfig


def make_accelerator(config: RunConfig):
    """The run's `Accelerator`, checked against what the launch asked for (`check_launch`).

    FSDP (`accelerate launch --config_file scripts/accelerate/fsdp.yaml`, or `--sharding fsdp`) is FSDP2 through
    Accelerate's plugin. Accelerate only shards on accelerators; on a CPU it would set up DDP (`MULTI_CPU`) instead,
    so there the plugin is switched on over the gloo ranks (`_fsdp_on_cpu`): the same `fully_shard`, sharded
    `save_state` and full-state export as on GPUs.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, ProjectConfiguration

    plugin = _fsdp_plugin(config)
    # Without a GPU, Accelerate only sets up gloo ranks when told to use the CPU; otherwise `accelerate launch` with
    # 2 processes starts two independent single-process runs that both write the same folder.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=config.output_dir, logging_dir=f"{config.output_dir}/logs"),
        fsdp_plugin=plugin,
    )
    if plugin is not None and accelerator.distributed_type == DistributedType.MULTI_CPU:
        _fsdp_on_cpu(accelerator, plugin)
    check_launch(accelerator, plugin is not None)
    return accelerator


LAUNCH_FIX = (
    "launch with `accelerate launch --config_file scripts/accelerate/fsdp.yaml --num_processes N` (on a CPU add "
    "`--mixed_precision no`), or drop --sharding fsdp and ACCELERATE_USE_FSDP for DDP"
)


def _fsdp_asked(config: RunConfig) -> bool:
    return config.sharding == "fsdp" or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def _fsdp_plugin(config: RunConfig):
    """Accelerate's FSDP plugin when the run asks for sharding: from the launch config's FSDP_* variables, or FSDP2
    with full sharding and transformer-block wrapping (each backbone's `_no_split_modules`) for `--sharding fsdp`."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    if not _fsdp_asked(config):
        return None
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        plugin = FullyShardedDataParallelPlugin()
    else:
        plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap", state_dict_type="SHARDED_STATE_DICT"
        )
    if plugin.fsdp_version != 2:
        raise FmriInputError.for_source(
            "accelerate launch", expected="fsdp_version 2 (FSDP2, as in scripts/accelerate/fsdp.yaml)",
            found=f"fsdp_version {plugin.fsdp_version}", hint="set fsdp_version: 2 in the accelerate config",
        )  # fmt: skip
    state_dict_type = getattr(plugin.state_dict_type, "name", plugin.state_dict_type)
    if state_dict_type != "SHARDED_STATE_DICT":  # the checkpoints `check_checkpoint` reads before a resume
        raise FmriInputError.for_source(
            "accelerate launch", expected="fsdp_state_dict_type SHARDED_STATE_DICT (torch.distributed.checkpoint)",
            found=f"{state_dict_type}", hint="set fsdp_state_dict_type: SHARDED_STATE_DICT in the accelerate config",
        )  # fmt: skip
    return plugin


def _fsdp_on_cpu(accelerator, plugin) -> None:
    """Turn Accelerate's CPU data parallelism (gloo ranks, which it would wrap in DDP) into FSDP2 with `plugin`:
    the state Accelerate itself sets up for FSDP on GPUs (`AcceleratorState.distributed_type` and `fsdp_plugin`)."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    state = accelerator.state
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def check_launch(accelerator, fsdp_asked: bool) -> None:
    """Refuse a set-up that differs from what the launch asked for, rather than train differently in silence.

    - `WORLD_SIZE` processes were launched but Accelerate runs another number: the processes would train separately,
      each on all the data, and write the same folder.
    - FSDP was asked (`ACCELERATE_USE_FSDP` from an FSDP accelerate config, or `--sharding fsdp`) but Accelerate set up
      something else, such as a single process (`python scripts/pretrain.py` without `accelerate launch`).
    """
    from accelerate.utils import DistributedType

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    found = f"{accelerator.distributed_type.value} with {accelerator.num_processes} process(es)"
    if accelerator.num_processes != launched:
        raise FmriInputError.for_source(
            "accelerate launch", expected=f"{launched} synchronised processes (WORLD_SIZE={launched})", found=found,
            hint="each would train alone on all the data; set use_cpu: true in the accelerate config on a CPU, "
            "or ACCELERATE_USE_CPU=1",
        )  # fmt: skip
    if fsdp_asked and not (accelerator.distributed_type == DistributedType.FSDP and accelerator.is_fsdp2):
        raise FmriInputError.for_source(
            "accelerate launch", expected="FSDP2 sharding (ACCELERATE_USE_FSDP or --sharding fsdp)", found=found,
            hint=LAUNCH_FIX,
        )  # fmt: skip


def is_sharded(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def full_state_dict(accelerator, model) -> dict | None:
    """Every process: the model's full (gathered) state dict for `save_pretrained` on the main process when the
    model is sharded (a collective: all ranks call it), else None (the model's own `state_dict`)."""
    return accelerator.get_state_dict(model) if is_sharded(accelerator) else None


class gathered_parameters:
    """Inside: an FSDP2 root holds its own full parameters, so its submodules can run on their own (validation calls
    `model.r2tnet`, not the root's `forward`, which is what gathers them); the wrapped layers gather theirs in their
    own hooks. A no-op for a model that is not sharded. Every rank must enter it and run the same forwards."""

    def __init__(self, model):
        from torch.distributed.fsdp import FSDPModule

        self.model = model if isinstance(model, FSDPModule) else None

    def __enter__(self):
        if self.model is not None:
            self.model.unshard()
        return self

    def __exit__(self, *exc):
        if self.model is not None:
            self.model.reshard()
        return False
