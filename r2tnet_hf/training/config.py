"""The run config: a YAML file plus snake_case flags that override it, resolved and saved in the run folder.

Every field of `RunConfig` is a flag (`--learning_rate 1e-4`) and a YAML key; nothing else is read. Both are made from
the field (its help, default and choices in its `option(...)`, `r2tnet_hf.options`), and both go through one
conversion, so `--help` and the YAML keys cannot drift apart. Unknown YAML keys and bad values are refused with one
line naming the file and the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import FmriInputError
from ..options import add_options, option, parse_value
from ..utils import OneLineArgumentParser, atomic_write_text

TASKS = ("pretrain", "finetune")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclass
class RunConfig:
    """Everything a pretraining or fine-tuning run reads. Each field's help and choices are in its `option(...)`."""

    # ---- data
    data: str = option("", "shard folder written by `r2tnet convert`")
    output_dir: str = option("runs/run", "run folder (checkpoints/, best/, logs)")
    splits: str | None = option(
        None,
        'splits JSON (`r2tnet split`, a run\'s splits.json, or a plain {"train": [...], "validation": [...], "test": '
        "[...]}); default: made from the shards' subjects and saved",
    )
    validation_fraction: float = option(0.15, "subjects held out for validation")
    test_fraction: float = option(0.15, "subjects held out for the final test")
    group_column: str | None = option(None, "phenotype column grouping subjects (family)")
    window_length: int | None = option(
        256, "most frames per training window (None: whole scans); see min_window_length"
    )
    min_window_length: int | None = option(
        32,
        "pretraining views are crops of a random length between this and window_length (real scans are "
        "often shorter than a fixed window); None: every view window_length",
    )
    roi_dropout: float = option(0.0, "pretraining: probability that a ROI of a view is zeroed (a missing parcel)")
    seed: int = option(0, "seed of the model, the splits, the batches and the windows")
    # ---- model
    init_from: str | None = option(None, "pretrained model folder to start from (fine-tuning: the encoder)")
    backbone: str = option(
        "tangent_connectome",
        "backbone model_type: tangent_connectome (the default: tangent-space FC fitted on the training "
        "subjects, an anchored learned correction), connectome_transformer, roi_transformer, swin4d, vit4d, ...",
    )
    backbone_config: dict = option(
        default_factory=dict,
        help="backbone config overrides (JSON on the command line); default: the backbone's defaults",
    )
    model_config: dict = option(
        default_factory=dict,
        help="R2TNetConfig overrides (JSON on the command line); default: a linear projection to a 2048-d "
        "signature, or for tangent_connectome the features themselves (projection_num_layers 0)",
    )
    reference_segment_length: int | None = option(
        50,
        "tangent_connectome: fit its reference and within-subject directions on the training scans cut "
        "into segments of this many frames (None: whole scans)",
    )
    validation_segment_length: int | None = option(
        50,
        "pretraining validation also identifies from segments of this many frames, over every pair of "
        "sessions (whole scans saturate on small cohorts); None: whole scans only",
    )
    gradient_checkpointing: bool = option(False, "recompute activations in backward")
    model: str = option(
        "r2tnet", "r2tnet (contrastive signatures) or mnemodyn (dynamics pretraining)", choices=("r2tnet", "mnemodyn")
    )
    objective: str = option(
        "reconstruct",
        "MnemoDyn objective: reconstruct, denoise, masked or jepa",
        choices=("reconstruct", "denoise", "masked", "jepa"),
    )
    mnemodyn_config: dict = option(default_factory=dict, help="MnemoDynConfig overrides for --model mnemodyn (JSON)")
    # ---- pretraining objective
    positives: str = option(
        "cross_modality",
        "cross_modality (rest⇄task), cross_session or same_scan",
        choices=("cross_modality", "cross_session", "same_scan"),
    )
    subjects_per_batch: int = option(8, "subjects (positive pairs) per batch per process")
    temperature: float | None = option(None, "NT-Xent temperature (default: the config's)")
    supervised_weight: float = option(0.0, "weight of a supervised term on `target` added to NT-Xent (pretraining)")
    # ---- fine-tuning
    target: list[str] = option(default_factory=list, help="phenotype column(s) to predict")
    preset: str | None = option(
        None,
        "downstream preset (abide, adhd200, adni, hbn, nkir, ukb, hcp_aging, or a YAML path): sets the "
        "target, problem type, labels and metric",
    )
    problem_type: str = option("regression", " | ".join(PROBLEM_TYPES), choices=PROBLEM_TYPES)
    freeze_backbone: bool = option(
        True, "with --init_from: a probe, the pretrained encoder frozen, only the head trained"
    )
    probe_solver: str = option(
        "sgd",
        "with a frozen R2T-Net from --init_from: sgd (the head trained by the loop with AdamW) or ridge "
        "(a regression head fitted in closed form on the frozen signatures, alpha chosen on validation MAE: the "
        "solver of the ridge-on-FC baseline)",
        choices=("sgd", "ridge"),
    )
    modality: str = option("rest", "rows used for fine-tuning: rest, task or all", choices=("rest", "task", "all"))
    batch_size: int = option(16, "fine-tuning batch size per process")
    # ---- optimisation
    learning_rate: float = option(3e-4, "peak learning rate (AdamW)")
    weight_decay: float = option(0.05, "AdamW weight decay")
    max_steps: int = option(200, "optimizer steps")
    warmup_steps: int = option(10, "linear warm-up steps")
    use_scheduler: bool = option(True, "cosine schedule with warm-up and hard restarts")
    num_cycles: int = option(1, "hard restarts of the cosine schedule")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step")
    max_grad_norm: float | None = option(1.0, "gradient clipping (None: off)")
    mixed_precision: str | None = option(
        None, "no | fp16 | bf16 (default: what `accelerate launch` says)", choices=(None, "no", "fp16", "bf16")
    )
    sharding: str = option(
        "auto",
        "auto (what `accelerate launch` says: FSDP2 with scripts/accelerate/fsdp.yaml, else DDP) or fsdp "
        "(FSDP2 whatever the accelerate config; needs `accelerate launch`). A launch that cannot shard is refused",
        choices=("auto", "fsdp"),
    )
    # ---- loop
    logging_steps: int = option(10, "log every N steps")
    eval_steps: int = option(50, "validate every N steps (and at the end)")
    save_steps: int = option(50, "save_state every N steps")
    save_total_limit: int = option(2, "checkpoints kept")
    resume_from_checkpoint: str | None = option(None, "latest, or a checkpoint folder")
    metric_for_best_model: str | None = option(
        None,
        "validation metric that picks OUTPUT/best/: val_fingerprint_segment_rank1 (pretraining default "
        "with validation_segment_length; else val_fingerprint_rank1), val_loss, val_mae (regression default), "
        "val_pearson_r, val_balanced_accuracy (classification default)",
    )
    greater_is_better: bool | None = option(None, "default: from the metric's name")
    progress: bool = option(True, "tqdm bar on the main process")
    verify_shards: bool = option(
        False, "before training, check every shard's sha256 against manifest.json (as r2tnet verify does)"
    )

    def __post_init__(self):
        self.check()

    def check(self, source: str | None = None) -> None:
        """Refuse a value outside a field's choices or range, with one line naming `source` and the key."""

        def bad(key: str, expected: str, found) -> FmriInputError:
            return FmriInputError.for_source(source or "run config", expected=f"{key}: {expected}", found=repr(found))

        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                names = [str(choice) for choice in choices if choice is not None]
                raise bad(f.name, f"{', '.join(names[:-1])} or {names[-1]}", getattr(self, f.name))
        if not 0.0 <= self.roi_dropout < 1.0:
            raise bad("roi_dropout", "a probability in [0, 1)", self.roi_dropout)
        for key in ("min_window_length", "reference_segment_length", "validation_segment_length"):
            if getattr(self, key) is not None and getattr(self, key) < 3:
                raise bad(key, "at least 3 frames, or None", getattr(self, key))
        for key in ("max_steps", "logging_steps", "eval_steps", "save_steps", "gradient_accumulation_steps"):
            if getattr(self, key) < 1:
                raise bad(key, "at least 1", getattr(self, key))
        if isinstance(self.target, str):
            self.target = [self.target]

    def metric_and_direction(self, task: str) -> tuple[str, bool]:
        """The metric that selects the best model, and whether greater is better."""
        metric = self.metric_for_best_model
        if metric is None:
            if task == "pretrain" and self.model == "r2tnet":
                segments = self.validation_segment_length is not None
                metric = "val_fingerprint_segment_rank1" if segments else "val_fingerprint_rank1"
            elif task == "pretrain":
                metric = "val_loss"
            else:
                metric = "val_mae" if self.problem_type == "regression" else "val_balanced_accuracy"
        greater = self.greater_is_better
        if greater is None:
            greater = not any(word in metric for word in ("loss", "mae", "mse", "error"))
        return metric, greater

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the resolved config (plus `extra`, e.g. the task and model type) as YAML, atomically."""
        import yaml

        atomic_write_text(path, yaml.safe_dump({**(extra or {}), **self.to_dict()}, sort_keys=False))


def load_run_config(yaml_path: str | os.PathLike | None = None, overrides: dict | None = None) -> RunConfig:
    """Read a YAML run config and apply overrides (flag values); refuse unknown keys.

    Both go through `r2tnet_hf.options.parse_value`: "none"/"null" for None where a field allows it, JSON for dicts,
    comma lists, yes/no words for bools.
    """
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    values = {}
    if yaml_path is not None:
        loaded = _read_yaml(Path(yaml_path))
        unknown = sorted(set(loaded) - set(fields))
        if unknown:
            raise FmriInputError.for_source(yaml_path, expected="known run-config keys", found=f"unknown {unknown}")
        values.update(
            {key: parse_value(RunConfig, fields[key], value, str(yaml_path)) for key, value in loaded.items()}
        )
    for key, value in (overrides or {}).items():
        values[key] = parse_value(RunConfig, fields[key], value, f"--{key}")
    config = RunConfig(**values)
    if not config.data:
        raise FmriInputError.for_source(
            yaml_path or "run config", expected="data: a shard folder", found="no data given"
        )
    return config


def _read_yaml(path: Path) -> dict:
    """The keys of a YAML run config, less those that `RunConfig.save` adds (task, model_type)."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise FmriInputError.for_source(path, expected="a YAML run config", found=type(error).__name__) from None
    if not isinstance(loaded, dict):
        raise FmriInputError.for_source(path, expected="a YAML mapping", found=type(loaded).__name__)
    return {key: value for key, value in loaded.items() if key not in ("task", "model_type")}


def build_argument_parser(description: str) -> argparse.ArgumentParser:
    """`--config FILE` plus one snake_case flag per `RunConfig` field, each with its help and default
    (`r2tnet_hf.options.add_options`, as every `r2tnet` subcommand)."""
    parser = OneLineArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML run config; flags override its keys")
    add_options(parser, RunConfig, config=True)
    return parser


def config_from_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> RunConfig:
    """The run config of a command line: the `--config` file's keys, the flags given laid over them."""
    args = vars(parser.parse_args(argv))
    yaml_path = args.pop("config", None)
    return load_run_config(yaml_path, args)
