"""The training loop: one `train(setup, recipe)` for every recipe, and the entry points `pretrain`, `finetune`, `run`.

A recipe supplies what differs between runs (a `Recipe`): the model, the batches and their resumable state, the loss,
the validation, and optional hooks (after each optimizer step, extra trainable modules, validation at step 0, the test
pass once at the end). The recipes:

- `pretrain` (`training.contrastive`): `R2TNetForContrastivePretraining` on `PairSampler` batches (rest⇄task
  positives by default), NT-Xent with negatives gathered from every process, and optionally a supervised term on a
  phenotype (a linear head on the signature, weight `supervised_weight`, as in the R2T-Net seed). Validation: Rank-1
  identification of held-out subjects against the FC baseline.
- `pretrain` with `model="mnemodyn"` (`training.mnemodyn`): MnemoDyn's objective on `FmriStream` windows.
- `finetune` (`training.phenotype`): `R2TNetForPhenotypePrediction` (from `init_from`, backbone frozen for a linear
  probe unless `freeze_backbone=False`) on `FmriStream` windows; validation picks the best model, and the test split
  is evaluated once at the end with it (`test_results.json`). A ridge probe (`training.probe`) skips the loop.

The loop does the rest: mixed precision and gradient accumulation through `Accelerator`, clipping, the cosine
schedule with warm-up and hard restarts from transformers, TensorBoard through Accelerate's trackers plus
`metrics.jsonl`, `save_state` checkpoints that resume the data stream where it stopped (a resumed CPU run ends
bit-identical to an uninterrupted one), OUTPUT/best/ chosen by the declared validation metric, and OUTPUT/last/.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import FmriInputError
from ..utils import atomic_write_text
from .checkpointing import load_checkpoint, resolve_checkpoint, save_best, save_checkpoint, save_pretrained_atomic
from .config import RunConfig
from .distributed import full_state_dict, gathered_parameters
from .setup import RunSetup, default_projection, resolve_splits, save_run_record, start_run, tracker_config

__all__ = [
    "BestModel",
    "MetricsLog",
    "Recipe",
    "TrainingResult",
    "default_projection",
    "finetune",
    "make_optimizer",
    "pretrain",
    "resolve_splits",
    "run",
    "train",
    "train_unfrozen",
]

logger = logging.getLogger(__name__)


@dataclass
class Recipe:
    """What a recipe gives `train`: all that differs between pretraining, MnemoDyn and fine-tuning.

    Attributes:
        task: `pretrain` or `finetune`: the progress bar, the run record and the default validation metric.
        model: the model to train, before `accelerator.prepare`.
        batches: the training batches, read pass after pass (`PairSampler`, `WindowBatches`); their `state_dict`
            goes into every checkpoint, and `load_state_dict` continues them where a resumed run stopped.
        loss: `loss(batch, model, *heads)` on the prepared modules: the scalar loss of a micro-batch.
        validate: `validate(model)` on the unwrapped model: the validation metrics (`val_*`).
        record: what OUTPUT/run_config.yaml records beside the config (the backbone, a fitted reference, ...).
        heads: extra trainable modules (the supervised term's head), prepared, accumulated and clipped with the model.
        after_step: `after_step(model, step)` on the unwrapped model after every optimizer step (the JEPA EMA step).
        validate_first: validate step 0 as a candidate for best/ (a fitted start).
        test: the test split, once, after training (with OUTPUT/best/): `TrainingResult.test`.
    """

    task: str
    model: torch.nn.Module
    batches: Iterable[dict]
    loss: Callable[..., torch.Tensor]
    validate: Callable[[torch.nn.Module], dict]
    record: dict = field(default_factory=dict)
    heads: list[torch.nn.Module] = field(default_factory=list)
    after_step: Callable[[torch.nn.Module, int], None] | None = None
    validate_first: bool = False
    test: Callable[[], dict | None] | None = None


@dataclass
class TrainingResult:
    """What a run returns: the last validation metrics, the trained (unwrapped) model, and the test metrics."""

    metrics: dict
    model: torch.nn.Module
    process_index: int = 0
    num_processes: int = 1
    test: dict | None = None


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


class BestModel:
    """OUTPUT/best/: the model at the best value of the validation `metric` so far (ties keep the earlier step)."""

    def __init__(self, metric: str, greater_is_better: bool, setup: RunSetup):
        self.metric, self.greater, self.setup = metric, greater_is_better, setup
        self.value: float | None = None
        self.step: int | None = None

    def improves(self, metrics: dict) -> bool:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value > self.value if self.greater else value < self.value

    def offer(self, model, metrics: dict, step: int) -> None:
        """Save `model` (prepared) as OUTPUT/best/ if `metrics` improve on the best; every process calls it."""
        if not self.improves(metrics):
            return
        self.value, self.step = float(metrics[self.metric]), step
        accelerator = self.setup.accelerator
        state_dict = full_state_dict(accelerator, model)
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            save_best(
                unwrapped, self.setup.shards.processor, self.setup.output, self.record(metrics), state_dict=state_dict
            )

    def record(self, metrics: dict) -> dict:
        """best/eval_results.json: what chose the model, and its validation metrics."""
        record = {"metric": self.metric, "greater_is_better": self.greater, "value": self.value, "step": self.step}
        return {**record, "split": "validation", "metrics": metrics}

    def state(self) -> dict:
        return {"value": self.value, "step": self.step}

    def load(self, state: dict) -> None:
        self.value, self.step = state["value"], state["step"]


class Interval:
    """The steps since the last log line: their summed loss (carried by checkpoints, so a resumed run logs what an
    uninterrupted one did), and the samples this process read and how long it waited for them."""

    def __init__(self, running: float = 0.0, count: int = 0):
        self.running, self.count = running, count
        self._start()

    def _start(self) -> None:
        self.samples, self.waited, self.started = 0, 0.0, time.perf_counter()

    def state(self) -> list:
        return [self.running, self.count]

    def fetch(self, batches: Iterator[dict]) -> dict:
        started = time.perf_counter()
        batch = next(batches)
        self.waited += time.perf_counter() - started
        self.samples += batch["fmri_values"].shape[0] * (2 if "paired_fmri_values" in batch else 1)
        return batch

    def add(self, loss: torch.Tensor) -> None:
        self.running += float(loss.detach())
        self.count += 1

    def close(self, accelerator, scheduler) -> dict:
        """The log line (the mean loss over every process); the next interval starts."""
        mean_loss = float(
            accelerator.reduce(torch.tensor(self.running / self.count, device=accelerator.device), "mean")
        )
        elapsed = time.perf_counter() - self.started
        values = {
            "loss": mean_loss,
            "learning_rate": scheduler.get_last_lr()[0],
            # this process's throughput, and the share of its time spent waiting for the next batch
            "samples_per_second": self.samples / elapsed,
            "data_wait_fraction": self.waited / elapsed,
        }
        self.running, self.count = 0.0, 0
        self._start()
        return values


def make_optimizer(config: RunConfig, parameters):
    """AdamW on the trainable parameters, and the cosine schedule with warm-up and hard restarts (or a constant)."""
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


def train_unfrozen(model: torch.nn.Module) -> None:
    """Train mode for the modules that train; eval mode for every frozen part (all its parameters frozen), so a
    probe's frozen backbone keeps its batch-norm statistics and runs without dropout."""
    model.train()
    for module in model.modules():
        parameters = list(module.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            module.eval()


# ------------------------------------------------------------------------------------------------------- the loop
def train(setup: RunSetup, recipe: Recipe) -> TrainingResult:
    """Run `recipe` for `max_steps` optimizer steps: log, validate, checkpoint, keep the best; then OUTPUT/last/ and
    the recipe's test pass."""
    from tqdm.auto import tqdm

    config, accelerator = setup.config, setup.accelerator
    modules, optimizer, scheduler = prepare(setup, recipe)
    model = modules[0]
    save_run_record(setup, recipe.task, recipe.record)
    if accelerator.is_main_process:
        accelerator.init_trackers("tensorboard", config=tracker_config(config))
    metrics_log = MetricsLog(accelerator, setup.output)
    best = BestModel(*config.metric_and_direction(recipe.task), setup)
    step, running = resume(setup, recipe, scheduler, best, metrics_log)
    shown = accelerator.is_main_process and config.progress
    progress = tqdm(total=config.max_steps, initial=step, desc=recipe.task, disable=not shown, dynamic_ncols=True)
    train_unfrozen(model)
    trainable = [p for p in model.parameters() if p.requires_grad] + [p for m in modules[1:] for p in m.parameters()]
    metrics = {}
    if recipe.validate_first and step == 0:  # a fitted start is a candidate for best/ like any later step
        metrics = validate(setup, recipe, model, best, metrics_log, 0)
    batches, interval = _endless(recipe.batches), Interval(*running)
    while step < config.max_steps:
        batch = interval.fetch(batches)
        with accelerator.accumulate(*modules):
            loss = recipe.loss(batch, *modules)
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        interval.add(loss)
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        step += 1
        if recipe.after_step is not None:
            recipe.after_step(accelerator.unwrap_model(model), step)
        progress.update(1)
        if step % config.logging_steps == 0 or step == config.max_steps:
            values = interval.close(accelerator, scheduler)
            metrics_log.log(values, step)
            progress.set_postfix(loss=f"{values['loss']:.4f}")
        if step % config.eval_steps == 0 or step == config.max_steps:
            metrics = validate(setup, recipe, model, best, metrics_log, step)
        if step % config.save_steps == 0 or step == config.max_steps:
            data, running = recipe.batches.state_dict(), interval.state()
            state = {"step": step, "data": data, "best": best.state(), "running": running}
            save_checkpoint(accelerator, setup.output, step, state, config.save_total_limit)
    progress.close()
    return finish(setup, recipe, model, metrics)


def prepare(setup: RunSetup, recipe: Recipe) -> tuple[list, object, object]:
    """The model and heads (gradient checkpointing on if asked) and their optimizer, through `accelerator.prepare`;
    the schedule. Returns the prepared modules (the model first), the optimizer and the scheduler."""
    if setup.config.gradient_checkpointing:
        recipe.model.activation_checkpointing_enable()
    modules = [recipe.model, *recipe.heads]
    optimizer, scheduler = make_optimizer(setup.config, [p for module in modules for p in module.parameters()])
    *modules, optimizer = setup.accelerator.prepare(*modules, optimizer)
    return modules, optimizer, scheduler


def _endless(batches: Iterable[dict]) -> Iterator[dict]:
    """The recipe's batches, pass after pass. Two passes in a row with no batch at all (no training rows for this
    process) are an error, not an endless wait; one may be empty, the rest of an epoch a resumed run stopped at the
    end of."""
    empty = 0
    while True:
        empty += 1
        for batch in batches:
            empty = 0
            yield batch
        if empty == 2:
            raise FmriInputError.for_source(
                "the training split", expected="at least one training batch per pass on every process",
                found="none", hint="check --modality, the splits and the number of processes against the data",
            )  # fmt: skip


def resume(setup: RunSetup, recipe: Recipe, scheduler, best: BestModel, metrics_log: MetricsLog) -> tuple[int, tuple]:
    """Step 0, or where `resume_from_checkpoint` stopped: the prepared modules, optimizer and RNG states restored by
    Accelerate, the data stream, the best metric and the schedule. Returns the step and the interval's loss sum."""
    config, accelerator = setup.config, setup.accelerator
    if not config.resume_from_checkpoint:
        return 0, (0.0, 0)
    path = resolve_checkpoint(setup.output, config.resume_from_checkpoint)
    reference = {"step": 0, "data": recipe.batches.state_dict(), "best": best.state()}
    state = load_checkpoint(accelerator, path, reference)
    step = state["step"]
    recipe.batches.load_state_dict(state["data"])
    best.load(state["best"])
    with warnings.catch_warnings():  # replaying the schedule, which is a pure function of the step
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(step):
            scheduler.step()
    metrics_log.truncate_after(step)
    if accelerator.is_main_process:
        logger.info(f"resumed from {path} at step {step}")
    return step, tuple(state.get("running", (0.0, 0)))


def validate(setup: RunSetup, recipe: Recipe, model, best: BestModel, metrics_log: MetricsLog, step: int) -> dict:
    """Validate, log, and save OUTPUT/best/ when the metric improves. Every process runs it."""
    accelerator = setup.accelerator
    with gathered_parameters(model):
        metrics = recipe.validate(accelerator.unwrap_model(model))
    train_unfrozen(model)  # validation leaves every module in train mode again
    metrics_log.log(metrics, step)
    best.offer(model, metrics, step)
    accelerator.wait_for_everyone()
    return metrics


def finish(setup: RunSetup, recipe: Recipe, model, metrics: dict) -> TrainingResult:
    """OUTPUT/last/ (the final weights as a loadable model, whatever validation said), the trackers closed, and the
    recipe's test pass."""
    accelerator, unwrapped = setup.accelerator, setup.accelerator.unwrap_model(model)
    state_dict = full_state_dict(accelerator, model)
    if accelerator.is_main_process:
        save_pretrained_atomic(unwrapped, setup.shards.processor, setup.output / "last", state_dict=state_dict)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    test = recipe.test() if recipe.test is not None else None
    return TrainingResult(metrics, unwrapped, accelerator.process_index, accelerator.num_processes, test)


# --------------------------------------------------------------------------------------------------- entry points
# The recipe modules import this one (`Recipe`, `train`): they are imported where they are used.
def pretrain(config: RunConfig) -> TrainingResult:
    """Contrastive pretraining of R2T-Net on a shard folder (or MnemoDyn's objective with `model="mnemodyn"`)."""
    if config.model == "mnemodyn":
        from .mnemodyn import check_roi_shards, mnemodyn_recipe

        setup = start_run(config, check_shards=check_roi_shards)
        return train(setup, mnemodyn_recipe(setup))
    from .contrastive import contrastive_recipe

    setup = start_run(config)
    return train(setup, contrastive_recipe(setup))


def finetune(config: RunConfig) -> TrainingResult:
    """Fit a phenotype head (linear probe or full fine-tune), then evaluate the test split once with the best model;
    with `probe_solver="ridge"`, fit the head of a frozen R2T-Net in closed form instead (`training.probe`)."""
    from .phenotype import check_target_columns, phenotype_head, phenotype_model, phenotype_recipe, resolve_preset
    from .probe import check_ridge_probe, ridge_probe

    preset = resolve_preset(config)
    setup = start_run(config, check_shards=check_target_columns)
    head, encode_label = phenotype_head(setup, preset)
    if config.probe_solver == "ridge":
        check_ridge_probe(config)
    model = phenotype_model(setup, head)
    if config.probe_solver == "ridge":
        return ridge_probe(setup, model)
    return train(setup, phenotype_recipe(setup, model, encode_label))


def run(config: RunConfig, task: str) -> TrainingResult:
    """`pretrain` or `finetune` into `config.output_dir` (what `training.main` runs)."""
    os.makedirs(config.output_dir, exist_ok=True)
    return pretrain(config) if task == "pretrain" else finetune(config)
