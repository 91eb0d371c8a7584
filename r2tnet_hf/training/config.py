"""The run config: a YAML file plus snake_case flags that override it, resolved and saved in the run folder.

Every field of `RunConfig` is a flag (`--learning_rate 1e-4`) and a YAML key; nothing else is read. Unknown YAML keys
and bad values are refused with one line naming the file and the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FmriInputError
from ..utils import OneLineArgumentParser, atomic_write_text

TASKS = ("pretrain", "finetune")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclass
class RunConfig:
    """Everything a pretraining or fine-tuning run reads. Help texts are the field metadata."""

    # ---- data
    data: str = field(default="", metadata={"help": "shard folder written by `r2tnet convert`"})
    output_dir: str = field(default="runs/run", metadata={"help": "run folder (checkpoints/, best/, logs)"})
    splits: str | None = field(
        default=None,
        metadata={
            "help": 'splits JSON (`r2tnet split`, a run\'s splits.json, or a plain {"train": [...], "validation": '
            '[...], "test": [...]}); default: made from the shards\' subjects and saved'
        },
    )
    validation_fraction: float = field(default=0.15, metadata={"help": "subjects held out for validation"})
    test_fraction: float = field(default=0.15, metadata={"help": "subjects held out for the final test"})
    group_column: str | None = field(default=None, metadata={"help": "phenotype column grouping subjects (family)"})
    window_length: int | None = field(
        default=256, metadata={"help": "most frames per training window (None: whole scans); see min_window_length"}
    )
    min_window_length: int | None = field(
        default=32,
        metadata={
            "help": "pretraining views are crops of a random length between this and window_length (real scans are "
            "often shorter than a fixed window); None: every view window_length"
        },
    )
    roi_dropout: float = field(
        default=0.0, metadata={"help": "pretraining: probability that a ROI of a view is zeroed (a missing parcel)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the model, the splits, the batches and the windows"})
    # ---- model
    init_from: str | None = field(
        default=None, metadata={"help": "pretrained model folder to start from (fine-tuning: the encoder)"}
    )
    backbone: str = field(
        default="tangent_connectome",
        metadata={
            "help": "backbone model_type: tangent_connectome (the default: tangent-space FC fitted on the training "
            "subjects, an anchored learned correction), connectome_transformer, roi_transformer, swin4d, vit4d, ..."
        },
    )
    backbone_config: dict = field(
        default_factory=dict,
        metadata={"help": "backbone config overrides (JSON on the command line); default: the backbone's defaults"},
    )
    model_config: dict = field(
        default_factory=dict,
        metadata={
            "help": "R2TNetConfig overrides (JSON on the command line); default: a linear projection to a 2048-d "
            "signature, or for tangent_connectome the features themselves (projection_num_layers 0)"
        },
    )
    reference_segment_length: int | None = field(
        default=50,
        metadata={
            "help": "tangent_connectome: fit its reference and within-subject directions on the training scans cut "
            "into segments of this many frames (None: whole scans)"
        },
    )
    validation_segment_length: int | None = field(
        default=50,
        metadata={
            "help": "pretraining validation also identifies from segments of this many frames, over every pair of "
            "sessions (whole scans saturate on small cohorts); None: whole scans only"
        },
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward"})
    model: str = field(
        default="r2tnet", metadata={"help": "r2tnet (contrastive signatures) or mnemodyn (dynamics pretraining)"}
    )
    objective: str = field(
        default="reconstruct", metadata={"help": "MnemoDyn objective: reconstruct, denoise, masked or jepa"}
    )
    mnemodyn_config: dict = field(
        default_factory=dict, metadata={"help": "MnemoDynConfig overrides for --model mnemodyn (JSON)"}
    )
    # ---- pretraining objective
    positives: str = field(
        default="cross_modality", metadata={"help": "cross_modality (rest⇄task), cross_session or same_scan"}
    )
    subjects_per_batch: int = field(default=8, metadata={"help": "subjects (positive pairs) per batch per process"})
    temperature: float | None = field(default=None, metadata={"help": "NT-Xent temperature (default: the config's)"})
    supervised_weight: float = field(
        default=0.0, metadata={"help": "weight of a supervised term on `target` added to NT-Xent (pretraining)"}
    )
    # ---- fine-tuning
    target: list[str] = field(default_factory=list, metadata={"help": "phenotype column(s) to predict"})
    preset: str | None = field(
        default=None,
        metadata={
            "help": "downstream preset (abide, adhd200, adni, hbn, nkir, ukb, hcp_aging, or a YAML path): sets the "
            "target, problem type, labels and metric"
        },
    )
    problem_type: str = field(default="regression", metadata={"help": " | ".join(PROBLEM_TYPES)})
    freeze_backbone: bool = field(
        default=True,
        metadata={"help": "with --init_from: a probe, the pretrained encoder frozen, only the head trained"},
    )
    probe_solver: str = field(
        default="sgd",
        metadata={
            "help": "with a frozen R2T-Net from --init_from: sgd (the head trained by the loop with AdamW) or ridge "
            "(a regression head fitted in closed form on the frozen signatures, alpha chosen on validation MAE: the "
            "solver of the ridge-on-FC baseline)"
        },
    )
    modality: str = field(default="rest", metadata={"help": "rows used for fine-tuning: rest, task or all"})
    batch_size: int = field(default=16, metadata={"help": "fine-tuning batch size per process"})
    # ---- optimisation
    learning_rate: float = field(default=3e-4, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay"})
    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warm-up steps"})
    use_scheduler: bool = field(default=True, metadata={"help": "cosine schedule with warm-up and hard restarts"})
    num_cycles: int = field(default=1, metadata={"help": "hard restarts of the cosine schedule"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping (None: off)"})
    mixed_precision: str | None = field(
        default=None, metadata={"help": "no | fp16 | bf16 (default: what `accelerate launch` says)"}
    )
    sharding: str = field(
        default="auto",
        metadata={
            "help": "auto (what `accelerate launch` says: FSDP2 with scripts/accelerate/fsdp.yaml, else DDP) or fsdp "
            "(FSDP2 whatever the accelerate config; needs `accelerate launch`). A launch that cannot shard is refused"
        },
    )
    # ---- loop
    logging_steps: int = field(default=10, metadata={"help": "log every N steps"})
    eval_steps: int = field(default=50, metadata={"help": "validate every N steps (and at the end)"})
    save_steps: int = field(default=50, metadata={"help": "save_state every N steps"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "latest, or a checkpoint folder"})
    metric_for_best_model: str | None = field(
        default=None,
        metadata={
            "help": "validation metric that picks OUTPUT/best/: val_fingerprint_segment_rank1 (pretraining default "
            "with validation_segment_length; else val_fingerprint_rank1), val_loss, val_mae (regression default), "
            "val_pearson_r, val_balanced_accuracy (classification default)"
        },
    )
    greater_is_better: bool | None = field(default=None, metadata={"help": "default: from the metric's name"})
    progress: bool = field(default=True, metadata={"help": "tqdm bar on the main process"})
    verify_shards: bool = field(
        default=False,
        metadata={"help": "before training, check every shard's sha256 against manifest.json (as r2tnet verify does)"},
    )

    def __post_init__(self):
        self.check()

    def check(self, source: str | None = None) -> None:
        def bad(key: str, expected: str, found) -> FmriInputError:
            return FmriInputError.for_source(source or "run config", expected=f"{key}: {expected}", found=repr(found))

        if self.positives not in ("cross_modality", "cross_session", "same_scan"):
            raise bad("positives", "cross_modality, cross_session or same_scan", self.positives)
        if self.model not in ("r2tnet", "mnemodyn"):
            raise bad("model", "r2tnet or mnemodyn", self.model)
        if self.objective not in ("reconstruct", "denoise", "masked", "jepa"):
            raise bad("objective", "reconstruct, denoise, masked or jepa", self.objective)
        if self.problem_type not in PROBLEM_TYPES:
            raise bad("problem_type", " | ".join(PROBLEM_TYPES), self.problem_type)
        if self.probe_solver not in ("sgd", "ridge"):
            raise bad("probe_solver", "sgd or ridge", self.probe_solver)
        if self.modality not in ("rest", "task", "all"):
            raise bad("modality", "rest, task or all", self.modality)
        if self.sharding not in ("auto", "fsdp"):
            raise bad("sharding", "auto or fsdp", self.sharding)
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            raise bad("mixed_precision", "no, fp16 or bf16", self.mixed_precision)
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


def _field_type(f: dataclasses.Field):
    hint = typing.get_type_hints(RunConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), type(None) in typing.get_args(hint)


def _convert(f: dataclasses.Field, value, source: str):
    """A YAML/flag value as the field's type; strings "none"/"null" mean None where None is allowed."""
    kind, optional = _field_type(f)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise FmriInputError.for_source(source, expected=f"{f.name}: a value", found="None")
    try:
        origin = typing.get_origin(kind) or kind
        if origin is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if origin is dict:
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError(value)
            return value
        if origin is list:
            if isinstance(value, str):
                value = [part for part in value.split(",") if part]
            return [str(v) for v in value]
        if origin is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return origin(value)
    except (TypeError, ValueError, json.JSONDecodeError):
        raise FmriInputError.for_source(
            source, expected=f"{f.name}: {getattr(kind, '__name__', kind)}", found=repr(value)
        ) from None


def load_run_config(yaml_path: str | os.PathLike | None = None, overrides: dict | None = None) -> RunConfig:
    """Read a YAML run config and apply overrides (flag values); refuse unknown keys."""
    import yaml

    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    values: dict = {}
    if yaml_path is not None:
        path = Path(yaml_path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise FmriInputError.for_source(path, expected="a YAML run config", found=type(error).__name__) from None
        if not isinstance(loaded, dict):
            raise FmriInputError.for_source(path, expected="a YAML mapping", found=type(loaded).__name__)
        loaded = {key: value for key, value in loaded.items() if key not in ("task", "model_type")}
        unknown = sorted(set(loaded) - set(fields))
        if unknown:
            raise FmriInputError.for_source(path, expected="known run-config keys", found=f"unknown {unknown}")
        values.update({key: _convert(fields[key], value, str(path)) for key, value in loaded.items()})
    for key, value in (overrides or {}).items():
        values[key] = _convert(fields[key], value, f"--{key}")
    config = RunConfig(**values)
    if not config.data:
        raise FmriInputError.for_source(
            yaml_path or "run config", expected="data: a shard folder", found="no data given"
        )
    return config


def build_argument_parser(description: str) -> argparse.ArgumentParser:
    """`--config FILE` plus one snake_case flag per `RunConfig` field, each with its help and default."""
    parser = OneLineArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML run config; flags override its keys")
    for f in dataclasses.fields(RunConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = json.dumps(default) if isinstance(default, (dict, list)) else default
        parser.add_argument(
            f"--{f.name}", default=argparse.SUPPRESS, help=f"{f.metadata.get('help', '')} (default: {shown})"
        )
    return parser


def config_from_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> RunConfig:
    args = vars(parser.parse_args(argv))
    yaml_path = args.pop("config", None)
    return load_run_config(yaml_path, args)
