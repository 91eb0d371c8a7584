"""A ridge probe: the linear head of a frozen R2T-Net fitted in closed form on its signatures.

With the encoder frozen, a regression head is a linear model of fixed features, so it can be solved exactly instead
of trained: the signatures of the training rows are computed once, ridge is fitted for every alpha of the FC
baselines' grid, and validation MAE picks the alpha, exactly as `fit_ridge_by_validation` does for the baselines.
The probe and the baselines then differ only in their features. Missing targets are left out of the fit and counted.
`ridge_probe` is the run: the head fitted, saved as OUTPUT/best/ and OUTPUT/last/, and the test split evaluated once.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import FmriInputError
from ..evaluation.baselines import fit_ridge_by_validation
from .checkpointing import save_best, save_pretrained_atomic
from .config import RunConfig
from .loop import BestModel, MetricsLog, TrainingResult
from .metrics import phenotype_metrics
from .phenotype import evaluate_test, is_r2tnet_checkpoint
from .setup import RunSetup, save_run_record
from .validation import encode_rows, phenotype_targets, select_rows


def fit_ridge_probe(
    model, shards, splits: dict, targets: list[str], modality: str, device, progress: bool = False
) -> dict:
    """Set `model.classifier` (an `R2TNetForPhenotypePrediction`) to the validated ridge solution; returns the
    validation metrics of the fitted model plus the chosen alpha of each target (`val_ridge_alpha`)."""
    rows = {name: select_rows(shards, splits[name], modality) for name in ("train", "validation")}
    # the head reads the signature × √signature_dim (R2TNetForPhenotypePrediction.forward)
    scale = math.sqrt(model.config.signature_dim)
    features = {
        name: encode_rows(model.r2tnet, shards, r, device, progress=f"signatures ({name})" if progress else None)
        * scale
        for name, r in rows.items()
    }
    values = {name: phenotype_targets(shards, r, targets) for name, r in rows.items()}
    weights, biases, alphas = [], [], []
    for column, target in enumerate(targets):
        observed = {name: np.isfinite(v[:, column]) for name, v in values.items()}
        if observed["train"].sum() < 2 or observed["validation"].sum() < 1:
            raise FmriInputError.for_source(
                shards.folder,
                expected=f"{target!r} values for at least 2 training rows and 1 validation row for a ridge probe",
                found=f"{int(observed['train'].sum())} and {int(observed['validation'].sum())}",
            )
        w, b, alpha = fit_ridge_by_validation(
            features["train"][observed["train"]],
            values["train"][observed["train"], column],
            features["validation"][observed["validation"]],
            values["validation"][observed["validation"], column],
        )
        weights.append(w)
        biases.append(b)
        alphas.append(alpha)
    weights, biases = np.stack(weights), np.asarray(biases)
    classifier = model.classifier
    with torch.no_grad():
        classifier.weight.copy_(torch.as_tensor(weights, dtype=classifier.weight.dtype))
        classifier.bias.copy_(torch.as_tensor(biases, dtype=classifier.bias.dtype))
    # the head's validation predictions, from the signatures already computed (the test split goes through the
    # saved model, in evaluate_test)
    predictions = features["validation"] @ weights.T + biases
    metrics = phenotype_metrics("regression", predictions, values["validation"], prefix="val")
    return {**metrics, "val_rows": len(rows["validation"]), "val_ridge_alpha": alphas}


def check_ridge_probe(config: RunConfig) -> None:
    """A ridge probe solves a linear regression head on the frozen signatures of a pretrained R2T-Net."""
    found = None
    if config.problem_type != "regression":
        found = f"problem_type {config.problem_type}"
    elif not config.init_from or not is_r2tnet_checkpoint(config.init_from):
        found = f"init_from {config.init_from} (not an R2T-Net checkpoint)"
    elif not config.freeze_backbone:
        found = "freeze_backbone false"
    if found is not None:
        raise FmriInputError.for_source(
            "probe_solver ridge",
            expected="a regression head on a frozen R2T-Net from init_from (freeze_backbone true)",
            found=found,
        )


def ridge_probe(setup: RunSetup, model) -> TrainingResult:
    """Fit the head in closed form (`fit_ridge_probe`), save it as OUTPUT/best/ and OUTPUT/last/, test it once."""
    config, accelerator, processor = setup.config, setup.accelerator, setup.shards.processor
    save_run_record(setup, "finetune", {"backbone_model_type": model.config.backbone_config.model_type})
    model.to(setup.device).eval()
    progress = config.progress and accelerator.is_main_process
    metrics = fit_ridge_probe(model, setup.shards, setup.splits, config.target, config.modality, setup.device, progress)
    best = BestModel(*config.metric_and_direction("finetune"), setup)
    best.value, best.step = metrics.get(best.metric), 0
    MetricsLog(accelerator, setup.output).log(metrics, 0)
    if accelerator.is_main_process:
        save_best(model, processor, setup.output, best.record(metrics))
        save_pretrained_atomic(model, processor, setup.output / "last")
    accelerator.wait_for_everyone()
    result = TrainingResult(metrics, model, accelerator.process_index, accelerator.num_processes)
    result.test = evaluate_test(setup, None)
    return result
