"""The contrastive pretraining recipe: `R2TNetForContrastivePretraining` on `PairSampler` batches.

Positives are two views of a subject (rest⇄task by default), NT-Xent takes its negatives from every process, and an
optional supervised term fits a linear head on the signature to a phenotype (weight `supervised_weight`, as in the
R2T-Net seed). A backbone with a closed-form start (the tangent backbone) is fitted on the training subjects first,
and that start is validated at step 0. Validation is Rank-1 identification of held-out subjects beside the classical
baselines; the test subjects are identified once at the end with OUTPUT/best/ (`test_results.json`).
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import torch

from ..data.pairs import PairSampler
from ..errors import FmriInputError
from ..hub.loading import from_pretrained_checked
from ..utils import atomic_write_text
from .distributed import is_sharded
from .loop import Recipe
from .setup import RunSetup, build_model, to_device
from .validation import baseline_metrics, scan_set, select_rows, validate_pretraining

logger = logging.getLogger(__name__)

INPUTS = (
    "fmri_values",
    "attention_mask",
    "repetition_time",
    "paired_fmri_values",
    "paired_attention_mask",
    "paired_repetition_time",
    "subject_ids",
)

# Trainable parameters per training subject above which a model can fit (memorise) its training people: the default
# ConnectomeTransformer (5.6M parameters) on 13 real subjects reached a training NT-Xent of 0.0005 while held-out
# Rank-1 fell from 0.77 (step 10) to 0.51, below raw FC (0.90).
MEMORISATION_RATIO = 10_000


def contrastive_recipe(setup: RunSetup) -> Recipe:
    """The model (with its fitted start), the pair batches, NT-Xent (plus the supervised term), identification."""
    from ..models.r2tnet import R2TNetForContrastivePretraining

    config, shards, splits, device = setup.config, setup.shards, setup.splits, setup.device
    model = build_model(config, shards.processor, R2TNetForContrastivePretraining)
    pairing = "modality" if config.positives == "cross_modality" else "session"
    fitted = _fit_backbone_reference(setup, model.r2tnet.backbone, pairing)
    head = _supervised_head(setup, model.config.signature_dim) if config.supervised_weight > 0 else None
    sampler = _pair_sampler(setup)
    _check_validation_segments(setup)
    _warn_if_memorisable(setup, model, len(sampler.candidates))
    baselines = _validation_baselines(setup, pairing)
    targets = _subject_targets(setup, config.target[0] if head is not None else None)

    def loss(batch, model, head=None):
        output = model(**to_device(batch, device, INPUTS), return_dict=True)
        if head is None:
            return output.loss
        subject_values = np.asarray([targets[s] for s in batch["subject"]], dtype=np.float32)  # each pair's subject
        expected = torch.tensor(subject_values, device=device).repeat(2)
        prediction = head(output.signature * math.sqrt(output.signature.shape[1]))  # both views, first view first
        observed = torch.isfinite(expected)
        supervised = torch.nn.functional.mse_loss(prediction[observed, 0], expected[observed]) if observed.any() else 0
        return output.loss + config.supervised_weight * supervised

    def validate(unwrapped):
        return validate_pretraining(
            unwrapped.r2tnet, shards, splits["validation"], pairing, unwrapped.config.temperature, device,
            segment_length=config.validation_segment_length, baselines=baselines,
        )  # fmt: skip

    return Recipe(
        task="pretrain",
        model=model,
        batches=sampler,
        loss=loss,
        validate=validate,
        record={"backbone_model_type": config.backbone, **(fitted or {})},
        heads=[head] if head is not None else [],
        validate_first=fitted is not None,
        test=lambda: evaluate_pretraining_test(setup, pairing),
    )


def _supervised_head(setup: RunSetup, signature_dim: int) -> torch.nn.Linear:
    """The supervised term's linear head on the signature, for one phenotype column (`target`); not with FSDP."""
    config, shards = setup.config, setup.shards
    if len(config.target) != 1 or config.target[0] not in shards.phenotype_columns:
        raise FmriInputError.for_source(
            config.data,
            expected="target: one numeric phenotype column for the supervised term",
            found=f"target {config.target}, columns {shards.phenotype_columns}",
        )
    if is_sharded(setup.accelerator):
        raise FmriInputError.for_source(
            "supervised_weight", expected="0 with FSDP (FSDP2 prepares one model; the term adds a head)",
            found=f"{config.supervised_weight}", hint="train the supervised term with DDP (scripts/accelerate/cpu.yaml"
            " or multi_gpu.yaml)",
        )  # fmt: skip
    return torch.nn.Linear(signature_dim, 1)


def _pair_sampler(setup: RunSetup) -> PairSampler:
    """This process's pair batches of the training subjects; refused when no batch can be made."""
    config, accelerator = setup.config, setup.accelerator
    sampler = PairSampler(
        setup.shards,
        positives=config.positives,
        subjects_per_batch=config.subjects_per_batch,
        subjects=setup.splits["train"],
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
    return sampler


def _subject_targets(setup: RunSetup, column: str | None) -> dict | None:
    """Each subject's value of the supervised term's `column` (None without the term)."""
    if column is None:
        return None
    meta = setup.shards.metadata
    return dict(zip(meta["subject"], np.asarray(meta[column], dtype=np.float64)))


def _scan_sets(setup: RunSetup, pairing: str, names: tuple[str, ...]) -> list:
    """The scans of the split `names`, paired as the recipe pairs them."""
    return [scan_set(setup.shards, select_rows(setup.shards, setup.splits[name]), pairing) for name in names]


def _fit_backbone_reference(setup: RunSetup, backbone, pairing: str) -> dict | None:
    """A backbone with a closed-form start (the tangent backbone) is fitted on the training subjects' scans before
    the first step, unless it comes from `init_from`. Every process fits the same thing from the same rows."""
    if not hasattr(backbone, "set_reference") or setup.config.init_from:
        return None
    from .reference import fit_reference

    (scans,) = _scan_sets(setup, pairing, ("train",))
    fitted = fit_reference(backbone, scans, setup.config.reference_segment_length)
    if setup.accelerator.is_main_process:
        logger.warning(
            f"fitted the {backbone.config.model_type} reference on {fitted['reference_scans']} scans of "
            f"{fitted['reference_subjects']} training subjects ({fitted['within_subject_directions']} within-subject "
            "directions); step 0 is validated as a candidate for best/"
        )
    return fitted


def _check_validation_segments(setup: RunSetup) -> None:
    """Validation on segments needs rows at least that long (volume shards hold windows of a few frames): else it
    is whole rows only, and the run says so (and records `validation_segment_length: null`)."""
    config, shards = setup.config, setup.shards
    length = config.validation_segment_length
    rows = select_rows(shards, setup.splits["validation"])
    longest = int(max(shards.metadata["num_frames"][rows], default=0)) if rows else 0
    if length is not None and longest < length:
        if setup.accelerator.is_main_process:
            logger.warning(
                f"validation_segment_length {length} is longer than every validation row ({longest} frames at most): "
                "validating on whole rows only"
            )
        config.validation_segment_length = None


def _warn_if_memorisable(setup: RunSetup, model, subjects: int) -> None:
    """Say so when the model has more than `MEMORISATION_RATIO` trainable parameters per training subject."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if setup.accelerator.is_main_process and trainable > MEMORISATION_RATIO * max(subjects, 1):
        logger.warning(
            f"{subjects} training subjects for {trainable:,} trainable parameters ({trainable // max(subjects, 1):,} "
            f"per subject): a model this size can memorise its training people, and held-out identification may "
            f"fall as training goes on. Watch the validation segment Rank-1 beside the baseline, or use "
            f"--backbone tangent_connectome, which starts at the classical baseline and is anchored to it"
        )


def _validation_baselines(setup: RunSetup, pairing: str) -> dict | None:
    """The classical baselines' validation identification (fitted on training subjects, chosen on validation), once:
    they do not change while the model trains. ROI data only."""
    if setup.shards.processor.input_type != "roi":
        return None
    train, validation = _scan_sets(setup, pairing, ("train", "validation"))
    if len(set(validation.subjects)) < 2:
        return None
    return baseline_metrics(train, validation, setup.config.validation_segment_length)


def evaluate_pretraining_test(setup: RunSetup, pairing: str) -> dict | None:
    """The test subjects, once, with OUTPUT/best/: identification at full length and on validation-length segments,
    beside the baselines fitted on the training subjects and chosen on validation; into `test_results.json`."""
    from ..models.r2tnet import R2TNetModel

    config, shards, splits = setup.config, setup.shards, setup.splits
    best_dir = setup.output / "best"
    if not setup.accelerator.is_main_process or not splits["test"] or not (best_dir / "model.safetensors").is_file():
        return None  # after end_training: the main process alone, no collective
    model = from_pretrained_checked(R2TNetModel, best_dir).to(setup.device)
    baselines = None
    if shards.processor.input_type == "roi" and splits["validation"]:
        train, validation, test = _scan_sets(setup, pairing, ("train", "validation", "test"))
        baselines = baseline_metrics(train, validation, config.validation_segment_length, prefix="test", test=test)
    metrics = validate_pretraining(
        model, shards, splits["test"], pairing, model.config.temperature, setup.device, prefix="test",
        segment_length=config.validation_segment_length, baselines=baselines,
    )  # fmt: skip
    results = {"metrics": metrics, "best": json.loads((best_dir / "eval_results.json").read_text())}
    atomic_write_text(setup.output / "test_results.json", json.dumps(results, indent=2) + "\n")
    return results
