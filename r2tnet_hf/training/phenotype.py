"""The fine-tuning recipe: `R2TNetForPhenotypePrediction` on `FmriStream` windows, a regression or classification head.

The encoder comes from `init_from` (frozen for a linear probe unless `freeze_backbone=False`: the whole R2T-Net, or a
bare backbone's checkpoint such as MnemoDyn's under a new projection head). A `preset` sets the target, the problem
type, the labels and the metric. Classes are encoded from the preset's labels, or from the training rows' values.
Validation picks OUTPUT/best/, and the test split is evaluated once at the end with it (`test_results.json`), beside
ridge on every classical FC baseline for ROI regression.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import torch

from ..data.streaming import ShardFolder
from ..errors import FmriInputError
from ..hub.loading import check_model_folder, from_pretrained_checked, resolve_model_folder
from ..utils import atomic_write_text
from .config import RunConfig
from .loop import Recipe
from .setup import RunSetup, WindowBatches, build_model, to_device
from .validation import phenotype_targets, scan_set, select_rows, validate_phenotype

logger = logging.getLogger(__name__)

INPUTS = ("fmri_values", "attention_mask", "repetition_time")


def resolve_preset(config: RunConfig) -> dict | None:
    """Apply `preset` (its target, problem type, metric and group column, where the config leaves them unset) and
    check what the run predicts; returns the preset (or None)."""
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
    return preset


def check_target_columns(config: RunConfig, shards: ShardFolder) -> None:
    """Every `target` is a phenotype column of the shards."""
    missing = [t for t in config.target if t not in shards.phenotype_columns]
    if missing:
        raise FmriInputError.for_source(
            config.data, expected=f"phenotype columns {missing}", found=f"columns {shards.phenotype_columns}"
        )


def phenotype_head(setup: RunSetup, preset: dict | None) -> tuple[dict, object]:
    """The head's config (`problem_type`, `num_labels`, the class names) and the label encoder (None for regression);
    says how many training rows have no usable target."""
    config, shards = setup.config, setup.shards
    encode_label = None
    head: dict = {"problem_type": config.problem_type}
    train_rows = select_rows(shards, setup.splits["train"], config.modality)
    if config.problem_type == "regression":
        head["num_labels"] = len(config.target)
    else:
        names, encode_label = label_encoder(shards.metadata[config.target[0]][train_rows], preset)
        head.update(
            num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
        )
    _report_missing_targets(setup, train_rows, encode_label)
    return head, encode_label


def phenotype_model(setup: RunSetup, head: dict):
    """The model with its new head; a linear probe freezes the signature of an R2T-Net from `init_from`, or the pooled
    features (through the new projection head) of a bare backbone's checkpoint such as MnemoDyn's."""
    from ..models.r2tnet import R2TNetForPhenotypePrediction

    config = setup.config
    model = build_model(config, setup.shards.processor, R2TNetForPhenotypePrediction, **head)
    if config.freeze_backbone and config.init_from:
        frozen = model.r2tnet if is_r2tnet_checkpoint(config.init_from) else model.r2tnet.backbone
        frozen.requires_grad_(False)
    return model


def phenotype_recipe(setup: RunSetup, model, encode_label) -> Recipe:
    """The windows of the `modality` rows, the head's loss on their targets, the phenotype metrics, the test once."""
    config, shards, device = setup.config, setup.shards, setup.device
    batches = WindowBatches(setup, None if config.modality == "all" else [config.modality])

    def labels_of(batch):
        if encode_label is None:
            values = np.stack([np.asarray(batch[t], dtype=np.float64) for t in config.target], axis=1)
            return torch.tensor(values, dtype=torch.float32, device=device)
        return torch.tensor([encode_label(v) for v in batch[config.target[0]]], device=device)

    def loss(batch, model):
        return model(**to_device(batch, device, INPUTS), labels=labels_of(batch), return_dict=True).loss

    def validate(unwrapped):
        metrics, *_ = validate_phenotype(
            unwrapped, shards, setup.splits["validation"], config.target, config.problem_type, encode_label,
            config.modality, device,
        )  # fmt: skip
        return metrics

    return Recipe(
        task="finetune",
        model=model,
        batches=batches,
        loss=loss,
        validate=validate,
        record={"backbone_model_type": model.config.backbone_config.model_type},
        test=lambda: evaluate_test(setup, encode_label),
    )


def is_r2tnet_checkpoint(source) -> bool:
    """Whether `init_from` is a whole R2T-Net (True when there is none), not a bare backbone's checkpoint."""
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


def _report_missing_targets(setup: RunSetup, rows, encode_label) -> None:
    """Training rows whose target is missing stay out of the loss: say how many, never drop them silently."""
    meta, targets = setup.shards.metadata, setup.config.target
    if encode_label is None:
        missing = sum(int(np.sum(~np.isfinite(np.asarray(meta[t][rows], dtype=np.float64)))) for t in targets)
    else:
        missing = sum(encode_label(v) == -100 for v in meta[targets[0]][rows])
    if missing and setup.accelerator.is_main_process:
        logger.warning(f"{missing} of {len(rows)} training rows have no usable {targets} value: left out of the loss")


def phenotype_baselines(setup: RunSetup) -> dict:
    """Ridge on every classical FC baseline (`ridge_baselines`): features fitted on every subject outside the
    validation and test splits (labelled or not: the training and any unassigned subjects), ridge fitted on the
    training rows with a target, alpha, PCA's k and the strongest baseline chosen on validation MAE."""
    from ..evaluation.baselines import ridge_baselines

    config, shards, splits = setup.config, setup.shards, setup.splits
    held_out = set(splits["validation"]) | set(splits["test"])
    fitting = sorted(set(shards.subject_ids) - held_out)
    rows = {name: select_rows(shards, splits[name], config.modality) for name in ("train", "validation", "test")}
    labelled = {name: scan_set(shards, r) for name, r in rows.items()}
    targets = {name: phenotype_targets(shards, r, config.target, None) for name, r in rows.items()}
    found = ridge_baselines(scan_set(shards, select_rows(shards, fitting, config.modality)), labelled, targets)
    return {**found, "fit_subjects": len(fitting)}


def evaluate_test(setup: RunSetup, encode_label) -> dict:
    """The test split, once, with OUTPUT/best/; beside it ridge on every classical FC baseline for ROI regression
    (`results["baselines"]`, the strongest chosen on validation; `results["fc_baseline"]`: raw FC)."""
    from ..models.r2tnet import R2TNetForPhenotypePrediction

    config, shards = setup.config, setup.shards
    best_dir = setup.output / "best"
    if not (best_dir / "model.safetensors").is_file():
        raise FmriInputError.for_source(best_dir, expected="a best model", found="no validation metric was finite")
    model = from_pretrained_checked(R2TNetForPhenotypePrediction, best_dir).to(setup.device)
    metrics, *_ = validate_phenotype(
        model, shards, setup.splits["test"], config.target, config.problem_type, encode_label, config.modality,
        setup.device, "test",
    )  # fmt: skip
    results = {"metrics": metrics, "best": json.loads((best_dir / "eval_results.json").read_text())}
    if config.problem_type == "regression" and shards.processor.input_type == "roi":
        results["baselines"] = phenotype_baselines(setup)
        found = results["baselines"]
        results["fc_baseline"] = {"test_mae": found["raw_test_mae"], "test_pearson_r": found["raw_test_pearson_r"]}
    if setup.accelerator.is_main_process:
        atomic_write_text(setup.output / "test_results.json", json.dumps(results, indent=2) + "\n")
    return results
