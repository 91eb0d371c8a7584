"""The Accelerate training loop shared by pretraining and fine-tuning.

One loop, two recipes:

- `pretrain`: `R2TNetForContrastivePretraining` on `PairSampler` batches (rest⇄task positives by default), NT-Xent
  with negatives gathered from every process, and optionally a supervised term on a phenotype (a linear head on the
  signature, weight `supervised_weight`, as in the R2T-Net seed). Validation: Rank-1 identification of held-out
  subjects against the FC baseline.
- `finetune`: `R2TNetForPhenotypePrediction` (from `init_from`, backbone frozen for a linear probe unless
  `freeze_backbone=False`) on `FmriStream` windows; validation picks the best model, and the test split is evaluated
  once at the end with it (`test_results.json`).

Mechanics: mixed precision and gradient accumulation through `Accelerator`, clipping, the cosine schedule with warm-up
and hard restarts from transformers, TensorBoard through Accelerate's trackers plus `metrics.jsonl`, `save_state`
checkpoints that resume the data stream where it stopped (a resumed CPU run ends bit-identical to an uninterrupted
one), and OUTPUT/best/ chosen by the declared validation metric.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.pairs import PairSampler
from ..data.splits import group_value, load_splits, make_splits, save_splits, ungrouped_note
from ..data.streaming import FmriStream, ShardFolder, fmri_loader, verify_shards
from ..errors import FmriInputError
from ..hub.loading import check_model_folder, from_pretrained_checked, resolve_model_folder
from ..utils import atomic_write_text
from .checkpointing import load_checkpoint, resolve_checkpoint, save_best, save_checkpoint, save_pretrained_atomic
from .config import RunConfig
from .validation import (
    baseline_metrics,
    phenotype_targets,
    scan_set,
    select_rows,
    validate_objective,
    validate_phenotype,
    validate_pretraining,
)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------- set-up
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


def resolve_splits(config: RunConfig, shards: ShardFolder, accelerator) -> dict[str, list[str]]:
    """The run's subject splits: the given file, or made from the shards' subjects (and saved in the run folder)."""
    output = Path(config.output_dir)
    if config.splits:
        splits = load_splits(config.splits, subjects=shards.subject_ids)
    else:
        groups = shard_groups(config, shards, accelerator) if config.group_column else None
        held_out = (config.validation_fraction, config.test_fraction)
        splits = make_splits(
            sorted(shards.subject_ids), groups, (1.0 - sum(held_out), *held_out), config.seed, source=config.data,
            group_column=config.group_column,
        )  # fmt: skip
    if accelerator.is_main_process:
        save_splits(splits, output / "splits.json", seed=config.seed)
    return splits


def open_shards(config: RunConfig) -> ShardFolder:
    """The run's shard folder. Its processor, which every saved model keeps, records the run's `window_length`, so
    inference cuts scans into the windows the model was trained on."""
    if config.verify_shards:
        verify_shards(config.data, progress=config.progress and int(os.environ.get("RANK", "0")) == 0)
    shards = ShardFolder(config.data)
    shards.processor.window_length = config.window_length
    return shards


def shard_groups(config: RunConfig, shards: ShardFolder, accelerator) -> dict[str, str | None]:
    """Each subject's `group_column` value in the shards (`None` where missing: that subject is its own group)."""
    if config.group_column not in shards.phenotype_columns:
        raise FmriInputError.for_source(
            config.data, expected=f"a {config.group_column!r} column", found=f"{shards.phenotype_columns}"
        )
    groups = dict(zip(shards.metadata["subject"], map(group_value, shards.metadata[config.group_column])))
    note = ungrouped_note(groups, config.group_column)
    if note and accelerator.is_main_process:
        logger.warning(note)
    return groups


def build_backbone_config(config: RunConfig, processor):
    from transformers import AutoConfig

    overrides = dict(config.backbone_config)
    if processor.input_type == "roi":
        overrides.setdefault("num_rois", processor.num_rois)
    else:
        overrides.setdefault("image_size", list(processor.volume_shape[1:]))
        overrides.setdefault("num_channels", processor.volume_shape[0])
    return AutoConfig.for_model(config.backbone, **overrides)


def build_model(config: RunConfig, processor, model_class, **head):
    """A fresh model from the run config, or `model_class.from_pretrained(init_from)`; the processor must match."""
    from ..models.r2tnet import R2TNetConfig

    model_config = dict(config.model_config)
    if config.temperature is not None:
        model_config["temperature"] = config.temperature
    if config.init_from:
        from transformers import AutoModel

        from ..hub.loading import read_processor

        source = resolve_model_folder(config.init_from)
        model_type = check_model_folder(source)["model_type"]
        if (source / "preprocessor_config.json").is_file():
            trained = read_processor(source)
            if trained.parcel_order_hash != processor.parcel_order_hash or trained.num_rois != processor.num_rois:
                raise FmriInputError.for_source(
                    config.data,
                    expected=f"data in the model's parcellation ({trained.atlas}, {trained.num_rois} ROIs, order "
                    f"{trained.parcel_order_hash})",
                    found=f"{processor.atlas}, {processor.num_rois} ROIs, order {processor.parcel_order_hash}",
                )
        if model_type == R2TNetConfig.model_type:
            # a new head (fine-tuning a pretrained encoder) starts fresh; the encoder's tensors must all be there
            return from_pretrained_checked(model_class, source, allow_missing=True, **head)
        # A backbone's own checkpoint (e.g. MnemoDyn pretraining): R2T-Net around it, the backbone's weights loaded.
        backbone = from_pretrained_checked(AutoModel, source)
        model_config = {**default_projection(backbone.config), **model_config}
        model = model_class(R2TNetConfig(backbone_config=backbone.config, **model_config, **head))
        model.r2tnet.backbone.load_state_dict(backbone.state_dict())
        return model
    backbone_config = build_backbone_config(config, processor)
    model_config = {**default_projection(backbone_config), **model_config}
    return model_class(R2TNetConfig(backbone_config=backbone_config, **model_config, **head))


def default_projection(backbone_config) -> dict:
    """The signature head a run uses unless `model_config` says otherwise: a linear projection to 2048 dimensions,
    or none for the tangent backbone, whose every feature carries identity (a 2048-d projection of its 7,021
    features lost Rank-1 from 50-frame segments on the development cohort; see the README)."""
    if backbone_config.model_type == "tangent_connectome":
        return {"signature_dim": backbone_config.hidden_size, "projection_num_layers": 0}
    return {"signature_dim": 2048, "projection_num_layers": 1}


def make_optimizer(config: RunConfig, parameters):
    from transformers import get_cosine_with_hard_restarts_schedule_with_warmup

    optimizer = torch.optim.AdamW(
        [p for p in parameters if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    if config.use_scheduler:
        scheduler = get_cosine_with_hard_restarts_schedule_with_warmup(
            optimizer, config.warmup_steps, config.max_steps, num_cycles=config.num_cycles
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return optimizer, scheduler


class MetricsLog:
    """`metrics.jsonl` on the main process, plus the Accelerate trackers (TensorBoard)."""

    def __init__(self, accelerator, output_dir: Path):
        self.accelerator, self.path = accelerator, output_dir / "metrics.jsonl"

    def truncate_after(self, step: int) -> None:
        """On resume, forget what a killed run logged after its last checkpoint (it is about to be redone)."""
        if self.accelerator.is_main_process and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line).get("step", 0) <= step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def log(self, values: dict, step: int) -> None:
        numeric = {k: v for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        self.accelerator.log(numeric, step=step)
        if self.accelerator.is_main_process:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": step, **values}) + "\n")


class BestTracker:
    def __init__(self, metric: str, greater_is_better: bool):
        self.metric, self.greater = metric, greater_is_better
        self.value: float | None = None
        self.step: int | None = None

    def improves(self, metrics: dict) -> bool:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value > self.value if self.greater else value < self.value

    def state(self) -> dict:
        return {"value": self.value, "step": self.step}

    def load(self, state: dict) -> None:
        self.value, self.step = state["value"], state["step"]


def _save_run_record(config: RunConfig, task: str, accelerator, extra: dict) -> None:
    output = Path(config.output_dir)
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        config.save(
            output / "run_config.yaml",
            extra={
                "task": task,
                "model_type": "r2tnet",
                "num_processes": accelerator.num_processes,
                "distributed_type": accelerator.distributed_type.value,  # FSDP when the weights are sharded
                **extra,
            },
        )


def _check_output_dir(config: RunConfig, accelerator) -> None:
    """Refuse to mix a new run into an old run's folder (resuming is explicit)."""
    output = Path(config.output_dir)
    if (
        config.resume_from_checkpoint is None
        and (output / "checkpoints").is_dir()
        and any((output / "checkpoints").iterdir())
    ):
        raise FmriInputError.for_source(
            output,
            expected="an empty or new run folder (or --resume_from_checkpoint latest)",
            found="checkpoints of an earlier run",
        )
    accelerator.wait_for_everyone()


# ------------------------------------------------------------------------------------------------------- the loop
def _to_device(batch: dict, device, keys) -> dict:
    return {key: batch[key].to(device) for key in keys if key in batch}


def train_unfrozen(model: torch.nn.Module) -> None:
    """Train mode for the modules that train; eval mode for every frozen part (all its parameters frozen), so a
    probe's frozen backbone keeps its batch-norm statistics and runs without dropout."""
    model.train()
    for module in model.modules():
        parameters = list(module.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            module.eval()


@dataclass
class TrainingResult:
    """What a run returns: the last validation metrics, the trained (unwrapped) model, and the test metrics of a
    fine-tuning run."""

    metrics: dict
    model: torch.nn.Module
    process_index: int = 0
    num_processes: int = 1
    test: dict | None = None


def _train(
    config: RunConfig,
    task: str,
    accelerator,
    model,
    processor,
    optimizer,
    scheduler,
    batches,
    data_state,
    compute_loss,
    validate,
    best: BestTracker,
    extra_modules=(),
    after_step=None,
    validate_first: bool = False,
) -> dict:
    """Run optimizer steps until `max_steps`: log, validate, checkpoint, keep the best. Returns the last metrics."""
    from tqdm.auto import tqdm

    output = Path(config.output_dir)
    metrics_log = MetricsLog(accelerator, output)
    step = 0
    if config.resume_from_checkpoint:
        path = resolve_checkpoint(output, config.resume_from_checkpoint)
        reference = {"step": 0, "data": data_state.state(), "best": best.state()}
        state = load_checkpoint(accelerator, path, reference)
        step = state["step"]
        data_state.load(state["data"])
        best.load(state["best"])
        running, count = state.get("running", (0.0, 0))
        with warnings.catch_warnings():  # replaying the schedule, which is a pure function of the step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(step):
                scheduler.step()
        metrics_log.truncate_after(step)
        if accelerator.is_main_process:
            logger.info(f"resumed from {path} at step {step}")
    progress = tqdm(
        total=config.max_steps,
        initial=step,
        desc=task,
        disable=not (accelerator.is_main_process and config.progress),
        dynamic_ncols=True,
    )
    last_metrics: dict = {}
    if not config.resume_from_checkpoint:
        running, count = 0.0, 0
    train_unfrozen(model)
    trainable = [p for p in model.parameters() if p.requires_grad] + [
        p for module in extra_modules for p in module.parameters()
    ]

    def evaluate(at_step: int) -> dict:
        """Validate, log, and save OUTPUT/best/ when the metric improves (ties keep the earlier step)."""
        with gathered_parameters(model):
            metrics = validate(accelerator.unwrap_model(model))
        train_unfrozen(model)  # validation leaves every module in train mode again
        metrics_log.log(metrics, at_step)
        if best.improves(metrics):
            best.value, best.step = float(metrics[best.metric]), at_step
            state_dict = full_state_dict(accelerator, model)
            if accelerator.is_main_process:
                record = {"metric": best.metric, "greater_is_better": best.greater, "value": best.value}
                record.update(step=at_step, split="validation", metrics=metrics)
                save_best(accelerator.unwrap_model(model), processor, output, record, state_dict=state_dict)
        accelerator.wait_for_everyone()
        return metrics

    if validate_first and step == 0:  # a fitted start is a candidate for best/ like any later step
        last_metrics = evaluate(0)
    iterator = iter(batches())
    waited, samples, interval_start = 0.0, 0, time.perf_counter()
    while step < config.max_steps:
        fetch_start = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(batches())
            continue
        waited += time.perf_counter() - fetch_start
        samples += batch["fmri_values"].shape[0] * (2 if "paired_fmri_values" in batch else 1)
        with accelerator.accumulate(model, *extra_modules):
            loss = compute_loss(batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        running += float(loss.detach())
        count += 1
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        step += 1
        if after_step is not None:
            after_step(step)
        progress.update(1)
        if step % config.logging_steps == 0 or step == config.max_steps:
            mean_loss = float(accelerator.reduce(torch.tensor(running / count, device=accelerator.device), "mean"))
            elapsed = time.perf_counter() - interval_start
            metrics_log.log(
                {
                    "loss": mean_loss,
                    "learning_rate": scheduler.get_last_lr()[0],
                    # this process's throughput, and the share of its time spent waiting for the next batch
                    "samples_per_second": samples / elapsed,
                    "data_wait_fraction": waited / elapsed,
                },
                step,
            )
            progress.set_postfix(loss=f"{mean_loss:.4f}")
            running, count = 0.0, 0
            waited, samples, interval_start = 0.0, 0, time.perf_counter()
        if step % config.eval_steps == 0 or step == config.max_steps:
            last_metrics = evaluate(step)
        if step % config.save_steps == 0 or step == config.max_steps:
            save_checkpoint(
                accelerator,
                output,
                step,
                {"step": step, "data": data_state.state(), "best": best.state(), "running": [running, count]},
                config.save_total_limit,
            )
    progress.close()
    state_dict = full_state_dict(accelerator, model)
    if accelerator.is_main_process:  # the final weights as a loadable model, whatever validation said
        save_pretrained_atomic(accelerator.unwrap_model(model), processor, output / "last", state_dict=state_dict)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainingResult(
        last_metrics, accelerator.unwrap_model(model), accelerator.process_index, accelerator.num_processes
    )


class _State:
    """Adapter: the data source's resumable state as JSON."""

    def __init__(self, source):
        self.source = source

    def state(self) -> dict:
        return self.source.state_dict()

    def load(self, state: dict) -> None:
        self.source.load_state_dict(state)


# ------------------------------------------------------------------------------------------------------ recipes
def pretrain(config: RunConfig) -> TrainingResult:
    """Contrastive pretraining of R2T-Net on a shard folder (or MnemoDyn's objective with `model="mnemodyn"`)."""
    from accelerate.utils import set_seed

    if config.model == "mnemodyn":
        return pretrain_mnemodyn(config)

    from ..models.r2tnet import R2TNetForContrastivePretraining

    accelerator = make_accelerator(config)
    _check_output_dir(config, accelerator)
    set_seed(config.seed)
    shards = open_shards(config)
    splits = resolve_splits(config, shards, accelerator)
    model = build_model(config, shards.processor, R2TNetForContrastivePretraining)
    pairing = "modality" if config.positives == "cross_modality" else "session"
    fitted = _fit_backbone_reference(config, model.r2tnet.backbone, shards, splits["train"], pairing, accelerator)
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable()
    head = None
    if config.supervised_weight > 0:
        if len(config.target) != 1 or config.target[0] not in shards.phenotype_columns:
            raise FmriInputError.for_source(
                config.data,
                expected="target: one numeric phenotype column for the supervised term",
                found=f"target {config.target}, columns {shards.phenotype_columns}",
            )
        if is_sharded(accelerator):
            raise FmriInputError.for_source(
                "supervised_weight", expected="0 with FSDP (FSDP2 prepares one model; the term adds a head)",
                found=f"{config.supervised_weight}", hint="train the supervised term with DDP (scripts/accelerate/cpu.yaml"
                " or multi_gpu.yaml)",
            )  # fmt: skip
        head = torch.nn.Linear(model.config.signature_dim, 1)
    modules = [model] + ([head] if head is not None else [])
    optimizer, scheduler = make_optimizer(config, [p for m in modules for p in m.parameters()])
    prepared = accelerator.prepare(*modules, optimizer)
    model, optimizer = prepared[0], prepared[-1]
    head = prepared[1] if head is not None else None
    sampler = PairSampler(
        shards,
        positives=config.positives,
        subjects_per_batch=config.subjects_per_batch,
        subjects=splits["train"],
        window_length=config.window_length,
        seed=config.seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        min_window_length=config.min_window_length,
        roi_dropout=config.roi_dropout,
    )
    if len(sampler) == 0:
        raise FmriInputError.for_source(
            config.data,
            expected=f"training subjects with {config.positives} pairs, at least {config.subjects_per_batch}",
            found=f"{len(sampler.candidates)} subjects with pairs in the training split",
        )
    _check_validation_segments(config, shards, splits["validation"], accelerator)
    metric, greater = config.metric_and_direction("pretrain")
    _warn_if_memorisable(accelerator.unwrap_model(model), len(sampler.candidates), accelerator)
    _save_run_record(config, "pretrain", accelerator, {"backbone_model_type": config.backbone, **(fitted or {})})
    device = accelerator.device
    baselines = _validation_baselines(config, shards, splits, pairing, accelerator)
    inputs = (
        "fmri_values",
        "attention_mask",
        "repetition_time",
        "paired_fmri_values",
        "paired_attention_mask",
        "paired_repetition_time",
        "subject_ids",
    )
    target_column = config.target[0] if head is not None else None

    def compute_loss(batch):
        output = model(**_to_device(batch, device, inputs), return_dict=True)
        if head is None:
            return output.loss
        targets = torch.tensor(np.asarray(batch[target_column + "_values"], dtype=np.float32), device=device).repeat(2)
        prediction = head(output.signature * math.sqrt(output.signature.shape[1]))  # both views, first view first
        observed = torch.isfinite(targets)
        supervised = torch.nn.functional.mse_loss(prediction[observed, 0], targets[observed]) if observed.any() else 0
        return output.loss + config.supervised_weight * supervised

    def validate(unwrapped):
        return validate_pretraining(
            unwrapped.r2tnet,
            shards,
            splits["validation"],
            pairing,
            unwrapped.config.temperature,
            device,
            segment_length=config.validation_segment_length,
            baselines=baselines,
        )

    if accelerator.is_main_process:
        accelerator.init_trackers("tensorboard", config=_tracker_config(config))
    result = _train(
        config,
        "pretrain",
        accelerator,
        model,
        shards.processor,
        optimizer,
        scheduler,
        lambda: _with_targets(sampler, shards, target_column),
        _State(sampler),
        compute_loss,
        validate,
        BestTracker(metric, greater),
        extra_modules=[head] if head is not None else [],
        validate_first=fitted is not None,
    )
    result.test = evaluate_pretraining_test(config, shards, splits, pairing, device, accelerator)
    return result


def evaluate_pretraining_test(config, shards, splits, pairing, device, accelerator) -> dict | None:
    """The test subjects, once, with OUTPUT/best/: identification at full length and on validation-length segments,
    beside the baselines fitted on the training subjects and chosen on validation; into `test_results.json`."""
    from ..models.r2tnet import R2TNetModel

    best_dir = Path(config.output_dir) / "best"
    if not accelerator.is_main_process or not splits["test"] or not (best_dir / "model.safetensors").is_file():
        return None  # after end_training: the main process alone, no collective
    model = from_pretrained_checked(R2TNetModel, best_dir).to(device)
    baselines = None
    if shards.processor.input_type == "roi" and splits["validation"]:
        train, validation, test = (
            scan_set(shards, select_rows(shards, splits[name]), pairing) for name in ("train", "validation", "test")
        )
        baselines = baseline_metrics(train, validation, config.validation_segment_length, prefix="test", test=test)
    metrics = validate_pretraining(
        model,
        shards,
        splits["test"],
        pairing,
        model.config.temperature,
        device,
        prefix="test",
        segment_length=config.validation_segment_length,
        baselines=baselines,
    )
    results = {"metrics": metrics, "best": json.loads((best_dir / "eval_results.json").read_text())}
    atomic_write_text(Path(config.output_dir) / "test_results.json", json.dumps(results, indent=2) + "\n")
    return results


def _fit_backbone_reference(config, backbone, shards, subjects, pairing, accelerator) -> dict | None:
    """A backbone with a closed-form start (the tangent backbone) is fitted on the training subjects' scans before
    the first step, unless it comes from `init_from`. Every process fits the same thing from the same rows."""
    if not hasattr(backbone, "set_reference") or config.init_from:
        return None
    from .reference import fit_reference

    scans = scan_set(shards, select_rows(shards, subjects), pairing)
    fitted = fit_reference(backbone, scans, config.reference_segment_length)
    if accelerator.is_main_process:
        logger.warning(
            f"fitted the {backbone.config.model_type} reference on {fitted['reference_scans']} scans of "
            f"{fitted['reference_subjects']} training subjects ({fitted['within_subject_directions']} within-subject "
            "directions); step 0 is validated as a candidate for best/"
        )
    return fitted


def _check_validation_segments(config, shards, subjects, accelerator) -> None:
    """Validation on segments needs rows at least that long (volume shards hold windows of a few frames): else it
    is whole rows only, and the run says so."""
    length = config.validation_segment_length
    rows = select_rows(shards, subjects)
    longest = int(max(shards.metadata["num_frames"][rows], default=0)) if rows else 0
    if length is not None and longest < length:
        if accelerator.is_main_process:
            logger.warning(
                f"validation_segment_length {length} is longer than every validation row ({longest} frames at most): "
                "validating on whole rows only"
            )
        config.validation_segment_length = None


def _validation_baselines(config, shards, splits, pairing, accelerator) -> dict | None:
    """The classical baselines' validation identification (fitted on training subjects, chosen on validation), once:
    they do not change while the model trains. ROI data only."""
    if shards.processor.input_type != "roi":
        return None
    train = scan_set(shards, select_rows(shards, splits["train"]), pairing)
    validation = scan_set(shards, select_rows(shards, splits["validation"]), pairing)
    if len(set(validation.subjects)) < 2:
        return None
    return baseline_metrics(train, validation, config.validation_segment_length)


# Trainable parameters per training subject above which a model can fit (memorise) its training people: the default
# ConnectomeTransformer (5.6M parameters) on 13 real subjects reached a training NT-Xent of 0.0005 while held-out
# Rank-1 fell from 0.77 (step 10) to 0.51, below raw FC (0.90).
MEMORISATION_RATIO = 10_000


def _warn_if_memorisable(model, subjects: int, accelerator) -> None:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if accelerator.is_main_process and trainable > MEMORISATION_RATIO * max(subjects, 1):
        logger.warning(
            f"{subjects} training subjects for {trainable:,} trainable parameters ({trainable // max(subjects, 1):,} "
            f"per subject): a model this size can memorise its training people, and held-out identification may "
            f"fall as training goes on. Watch the validation segment Rank-1 beside the baseline, or use "
            f"--backbone tangent_connectome, which starts at the classical baseline and is anchored to it"
        )


def pretrain_mnemodyn(config: RunConfig) -> TrainingResult:
    """MnemoDyn pretraining (`objective` reconstruct, denoise, masked or jepa) on `FmriStream` windows, through the
    same loop: after every optimizer step the JEPA target encoder takes its EMA step with the scheduled momentum."""
    from accelerate.utils import set_seed

    from ..models.mnemodyn import MnemoDynConfig, MnemoDynForPretraining

    accelerator = make_accelerator(config)
    _check_output_dir(config, accelerator)
    set_seed(config.seed)
    shards = open_shards(config)
    if shards.processor.input_type != "roi":
        raise FmriInputError.for_source(config.data, expected="ROI series for MnemoDyn", found="volumes")
    splits = resolve_splits(config, shards, accelerator)
    if config.init_from:
        model = from_pretrained_checked(
            MnemoDynForPretraining, config.init_from, allow_missing=True, objective=config.objective
        )
    else:
        # MnemoDyn's weights are per position in a window of num_frames: by default, the training window.
        overrides = {
            "num_rois": shards.processor.num_rois,
            **({"num_frames": config.window_length} if config.window_length else {}),
            **config.mnemodyn_config,
            "objective": config.objective,
        }
        model = MnemoDynForPretraining(MnemoDynConfig(**overrides))
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable()
    optimizer, scheduler = make_optimizer(config, model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    stream = FmriStream(
        shards,
        subjects=splits["train"],
        window_length=config.window_length,
        seed=config.seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        batch_size=config.batch_size,  # batches collated whole in the stream
    )
    loader = fmri_loader(stream, num_workers=0)  # batches collated into reused buffers
    metric, greater = config.metric_and_direction("pretrain")
    _save_run_record(config, "pretrain", accelerator, {"objective": config.objective, "model_type": "mnemodyn"})
    device = accelerator.device

    def compute_loss(batch):
        inputs = _to_device(batch, device, ("fmri_values", "attention_mask", "repetition_time"))
        return model(**inputs, return_dict=True).loss  # masks and noise from the torch RNG, restored on resume

    def validate(unwrapped):
        return validate_objective(unwrapped, shards, splits["validation"], device)

    def after_step(step):
        accelerator.unwrap_model(model).after_optimizer_step(progress=step / config.max_steps)

    if accelerator.is_main_process:
        accelerator.init_trackers("tensorboard", config=_tracker_config(config))
    return _train(
        config,
        "pretrain",
        accelerator,
        model,
        shards.processor,
        optimizer,
        scheduler,
        lambda: loader,
        _State(stream),
        compute_loss,
        validate,
        BestTracker(metric, greater),
        after_step=after_step,
    )


def _with_targets(sampler: PairSampler, shards: ShardFolder, column: str | None):
    """Pair batches, with the supervised target of each pair's subject attached when a column is asked for."""
    values = None
    if column is not None:
        meta = shards.metadata
        values = dict(zip(meta["subject"], np.asarray(meta[column], dtype=np.float64)))
    for batch in sampler:
        if values is not None:
            batch[column + "_values"] = [values[s] for s in batch["subject"]]
        yield batch


def _tracker_config(config: RunConfig) -> dict:
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) or v is None else v) for k, v in config.to_dict().items()}


def finetune(config: RunConfig) -> TrainingResult:
    """Fit a phenotype head (linear probe or full fine-tune), then evaluate the test split once with the best model."""
    from accelerate.utils import set_seed

    from ..models.r2tnet import R2TNetForPhenotypePrediction

    preset = None
    if config.preset:
        from ..presets import load_preset

        preset = load_preset(config.preset)
        config.target = [str(column) for column in preset["target_columns"]]
        config.problem_type = preset["problem_type"]
        config.metric_for_best_model = config.metric_for_best_model or preset["metric"]
        if config.greater_is_better is None:
            config.greater_is_better = bool(preset["greater_is_better"])
        config.group_column = config.group_column or preset.get("group_column")
    if not config.target:
        raise FmriInputError.for_source(config.data, expected="target: a phenotype column (or --preset)", found="none")
    if config.problem_type == "multi_label_classification":
        raise FmriInputError.for_source(
            config.data, expected="regression or single_label_classification", found="multi_label_classification"
        )
    accelerator = make_accelerator(config)
    _check_output_dir(config, accelerator)
    set_seed(config.seed)
    shards = open_shards(config)
    missing = [t for t in config.target if t not in shards.phenotype_columns]
    if missing:
        raise FmriInputError.for_source(
            config.data, expected=f"phenotype columns {missing}", found=f"columns {shards.phenotype_columns}"
        )
    splits = resolve_splits(config, shards, accelerator)
    encode_label = None
    head: dict = {"problem_type": config.problem_type}
    train_rows = select_rows(shards, splits["train"], config.modality)
    if config.problem_type == "regression":
        head["num_labels"] = len(config.target)
    else:
        names, encode_label = label_encoder(shards.metadata[config.target[0]][train_rows], preset)
        head.update(
            num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
        )
    _report_missing_targets(shards, train_rows, config.target, encode_label, accelerator)
    if config.probe_solver == "ridge":
        _check_ridge_probe(config)
    model = build_model(config, shards.processor, R2TNetForPhenotypePrediction, **head)
    if config.freeze_backbone and config.init_from:
        # a linear probe on the signature of an R2T-Net; on the pooled features (through the new projection head) of
        # a bare backbone's checkpoint such as MnemoDyn's
        frozen = model.r2tnet if _is_r2tnet_checkpoint(config.init_from) else model.r2tnet.backbone
        frozen.requires_grad_(False)
    if config.probe_solver == "ridge":
        return _ridge_probe(config, accelerator, model, shards, splits)
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable()
    optimizer, scheduler = make_optimizer(config, model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    modalities = None if config.modality == "all" else [config.modality]
    stream = FmriStream(
        shards,
        subjects=splits["train"],
        modalities=modalities,
        window_length=config.window_length,
        seed=config.seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        batch_size=config.batch_size,  # batches collated whole in the stream
    )
    loader = fmri_loader(stream, num_workers=0)  # batches collated into reused buffers
    metric, greater = config.metric_and_direction("finetune")
    _save_run_record(config, "finetune", accelerator, {"backbone_model_type": model.config.backbone_config.model_type})
    device = accelerator.device

    def labels_of(batch):
        if encode_label is None:
            values = np.stack([np.asarray(batch[t], dtype=np.float64) for t in config.target], axis=1)
            return torch.tensor(values, dtype=torch.float32, device=device)
        return torch.tensor([encode_label(v) for v in batch[config.target[0]]], device=device)

    def compute_loss(batch):
        inputs = _to_device(batch, device, ("fmri_values", "attention_mask", "repetition_time"))
        return model(**inputs, labels=labels_of(batch), return_dict=True).loss

    def validate(unwrapped):
        metrics, *_ = validate_phenotype(
            unwrapped,
            shards,
            splits["validation"],
            config.target,
            config.problem_type,
            encode_label,
            config.modality,
            device,
        )
        return metrics

    if accelerator.is_main_process:
        accelerator.init_trackers("tensorboard", config=_tracker_config(config))
    result = _train(
        config,
        "finetune",
        accelerator,
        model,
        shards.processor,
        optimizer,
        scheduler,
        lambda: loader,
        _State(stream),
        compute_loss,
        validate,
        BestTracker(metric, greater),
    )
    result.test = evaluate_test(config, shards, splits, encode_label, device, accelerator)
    return result


def _check_ridge_probe(config: RunConfig) -> None:
    """A ridge probe solves a linear regression head on the frozen signatures of a pretrained R2T-Net."""
    found = None
    if config.problem_type != "regression":
        found = f"problem_type {config.problem_type}"
    elif not config.init_from or not _is_r2tnet_checkpoint(config.init_from):
        found = f"init_from {config.init_from} (not an R2T-Net checkpoint)"
    elif not config.freeze_backbone:
        found = "freeze_backbone false"
    if found is not None:
        raise FmriInputError.for_source(
            "probe_solver ridge",
            expected="a regression head on a frozen R2T-Net from init_from (freeze_backbone true)",
            found=found,
        )


def _ridge_probe(config: RunConfig, accelerator, model, shards: ShardFolder, splits: dict) -> TrainingResult:
    """Fit the head in closed form (`training.probe`), save it as OUTPUT/best/ and OUTPUT/last/, test it once."""
    from .probe import fit_ridge_probe

    output = Path(config.output_dir)
    _save_run_record(config, "finetune", accelerator, {"backbone_model_type": model.config.backbone_config.model_type})
    device = accelerator.device
    model.to(device).eval()
    progress = config.progress and accelerator.is_main_process
    metrics = fit_ridge_probe(model, shards, splits, config.target, config.modality, device, progress)
    metric, greater = config.metric_and_direction("finetune")
    MetricsLog(accelerator, output).log(metrics, 0)
    if accelerator.is_main_process:
        results = {"metric": metric, "greater_is_better": greater, "value": metrics.get(metric), "step": 0}
        save_best(model, shards.processor, output, {**results, "split": "validation", "metrics": metrics})
        save_pretrained_atomic(model, shards.processor, output / "last")
    accelerator.wait_for_everyone()
    result = TrainingResult(metrics, model, accelerator.process_index, accelerator.num_processes)
    result.test = evaluate_test(config, shards, splits, None, device, accelerator)
    return result


def _is_r2tnet_checkpoint(source) -> bool:
    if source is None:
        return True
    return check_model_folder(resolve_model_folder(source))["model_type"] == "r2tnet"


def _label_key(value) -> str | None:
    """A class cell as text: None for missing (None, NaN, empty), integral floats without ".0" (1.0 → "1")."""
    if value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            value = int(value)
    text = str(value).strip()
    return text if text and text.lower() not in ("n/a", "na", "nan") else None


def label_encoder(train_values, preset: dict | None = None):
    """Class names and a function mapping a raw cell to its class index (-100 for missing or unknown cells).

    With a preset, its `labels` and `label_mapping` decide (e.g. ABIDE's DX_GROUP 1/2 → ASD/TDC); otherwise the classes
    are the distinct values of the training rows, sorted.
    """
    if preset is not None:
        from ..presets import label_index

        names = [str(label) for label in preset["labels"]]

        def encode(value) -> int:
            key = _label_key(value)
            index = None if key is None else label_index(preset, key)
            return -100 if index is None else index

        return names, encode
    names = sorted({key for value in train_values if (key := _label_key(value)) is not None})
    ids = {name: index for index, name in enumerate(names)}
    return names, lambda value: ids.get(_label_key(value), -100)


def _report_missing_targets(shards, rows, targets, encode_label, accelerator) -> None:
    """Training rows whose target is missing stay out of the loss: say how many, never drop them silently."""
    meta = shards.metadata
    if encode_label is None:
        missing = sum(int(np.sum(~np.isfinite(np.asarray(meta[t][rows], dtype=np.float64)))) for t in targets)
    else:
        missing = sum(encode_label(v) == -100 for v in meta[targets[0]][rows])
    if missing and accelerator.is_main_process:
        logger.warning(f"{missing} of {len(rows)} training rows have no usable {targets} value: left out of the loss")


def phenotype_baselines(config, shards, splits) -> dict:
    """Ridge on every classical FC baseline (`ridge_baselines`): features fitted on every subject outside the
    validation and test splits (labelled or not: the training and any unassigned subjects), ridge fitted on the
    training rows with a target, alpha, PCA's k and the strongest baseline chosen on validation MAE."""
    from ..evaluation.baselines import ridge_baselines

    held_out = set(splits["validation"]) | set(splits["test"])
    fitting = sorted(set(shards.subject_ids) - held_out)
    rows = {name: select_rows(shards, splits[name], config.modality) for name in ("train", "validation", "test")}
    labelled = {name: scan_set(shards, r) for name, r in rows.items()}
    targets = {name: phenotype_targets(shards, r, config.target, None) for name, r in rows.items()}
    found = ridge_baselines(scan_set(shards, select_rows(shards, fitting, config.modality)), labelled, targets)
    return {**found, "fit_subjects": len(fitting)}


def evaluate_test(config, shards, splits, encode_label, device, accelerator) -> dict:
    """The test split, once, with OUTPUT/best/; beside it ridge on every classical FC baseline for ROI regression
    (`results["baselines"]`, the strongest chosen on validation; `results["fc_baseline"]`: raw FC)."""
    from ..models.r2tnet import R2TNetForPhenotypePrediction

    output = Path(config.output_dir)
    best_dir = output / "best"
    if not (best_dir / "model.safetensors").is_file():
        raise FmriInputError.for_source(best_dir, expected="a best model", found="no validation metric was finite")
    model = from_pretrained_checked(R2TNetForPhenotypePrediction, best_dir).to(device)
    metrics, *_ = validate_phenotype(
        model, shards, splits["test"], config.target, config.problem_type, encode_label, config.modality, device, "test"
    )
    results = {"metrics": metrics, "best": json.loads((best_dir / "eval_results.json").read_text())}
    if config.problem_type == "regression" and shards.processor.input_type == "roi":
        results["baselines"] = phenotype_baselines(config, shards, splits)
        found = results["baselines"]
        results["fc_baseline"] = {"test_mae": found["raw_test_mae"], "test_pearson_r": found["raw_test_pearson_r"]}
    if accelerator.is_main_process:
        atomic_write_text(output / "test_results.json", json.dumps(results, indent=2) + "\n")
    return results


def run(config: RunConfig, task: str) -> TrainingResult:
    os.makedirs(config.output_dir, exist_ok=True)
    return pretrain(config) if task == "pretrain" else finetune(config)
