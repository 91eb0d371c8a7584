"""Validation and test passes of the training loop: signatures of held-out subjects, fingerprinting against the FC
baseline, and phenotype metrics. Every row of the chosen subjects is used; rows that cannot be paired are counted in
the results, never dropped silently.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..data.streaming import ShardFolder, collate_fmri, decode_array, sample_from_row, window_processor
from ..evaluation.baselines import baseline_identification, best_in_hindsight
from ..evaluation.fingerprint_scans import encode_scans
from ..evaluation.fingerprinting import ScanSet, fc_features, pairwise_identification
from .losses import nt_xent_loss
from .metrics import phenotype_metrics


def select_rows(shards: ShardFolder, subjects, modality: str = "all") -> list[int]:
    meta = shards.metadata
    keep = np.isin(meta["subject"], list(subjects))
    if modality != "all":
        keep &= meta["modality"] == modality
    return np.flatnonzero(keep).tolist()


def row_batches(shards: ShardFolder, rows: list[int], device, batch_size: int = 8):
    """Model inputs for whole rows, `batch_size` at a time: the processor with no window and no second
    normalisation (rows were z-scored by `convert`), padded and masked by `collate_fmri`."""
    processor = window_processor(shards, window_length=None)
    generator = np.random.default_rng(0)
    for start in range(0, len(rows), batch_size):
        chosen = rows[start : start + batch_size]
        samples = [
            sample_from_row(shards.read_row(i), processor, generator, "start", shards.subject_ids, []) for i in chosen
        ]
        batch = collate_fmri(samples)
        yield {key: batch[key].to(device) for key in ("fmri_values", "attention_mask", "repetition_time")}


@torch.no_grad()
def encode_rows(
    model,
    shards: ShardFolder,
    rows: list[int],
    device,
    batch_size: int = 8,
    output: str = "signature",
    progress: str | None = None,
):
    """`output` (e.g. the signature, or logits) of whole rows, as numpy, in the order of `rows`; `progress` names a
    progress bar over the batches (none by default)."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    batches = tqdm(
        row_batches(shards, rows, device, batch_size),
        desc=progress,
        total=math.ceil(len(rows) / batch_size),
        unit="batch",
        disable=progress is None,
        leave=False,
    )
    results = [getattr(model(**inputs), output).float().cpu().numpy() for inputs in batches]
    model.train(was_training)
    return np.concatenate(results) if results else np.zeros((0, 0), np.float32)


def scan_set(shards: ShardFolder, rows: list[int], pairing: str = "session") -> ScanSet:
    """The rows as a `ScanSet`: sides are the sessions (`pairing="session"`) or the modalities (`"modality"`), the
    state of each row is its task (what state-centring centres on)."""
    meta = shards.metadata
    sides = meta["modality"] if pairing == "modality" else meta["session"]
    return ScanSet(
        [decode_array(shards.read_row(row)) for row in rows],
        [meta["subject"][row] for row in rows],
        [sides[row] for row in rows],
        [meta["task"][row] for row in rows],
        repetition_times=[float(meta["repetition_time"][row]) for row in rows],
    )


def _identification_metrics(found: dict, prefix: str) -> dict:
    metrics = {f"{prefix}_rank1": found["rank1"], f"{prefix}_rank1_std": found["rank1_std"]}
    metrics[f"{prefix}_map"] = found["map"]
    return metrics


def baseline_metrics(
    train: ScanSet, validation: ScanSet, segment_length: int | None, prefix: str = "val", test: ScanSet | None = None
) -> dict:
    """The classical baselines' identification, as metrics beside the model's: raw FC (`{prefix}_fc_*`) and the
    strongest baseline on validation (`{prefix}_baseline_*`, its name in `{prefix}_baseline`), at full length and
    on `segment_length`-frame segments (`*_segment_*`). Fitted on `train`, chosen on `validation`, scored on
    `test` (default: validation); with `test`, also the best baseline on it in hindsight
    (`{prefix}_hindsight_*`, its name in `{prefix}_hindsight_baseline`)."""
    metrics = {}
    for infix, length in (("", None), ("segment_", segment_length)):
        if infix and length is None:
            continue
        found = baseline_identification(train, validation, test, length)
        strongest = found["strongest"]
        metrics[f"{prefix}_{infix}baseline"] = strongest
        metrics.update(_identification_metrics(found["results"]["raw"], f"{prefix}_fc_{infix}".rstrip("_")))
        metrics.update(_identification_metrics(found["results"][strongest], f"{prefix}_baseline_{infix}".rstrip("_")))
        if test is not None:  # the strictest comparison: the best baseline on the test subjects, in hindsight
            best = best_in_hindsight(found["results"], strongest)
            metrics[f"{prefix}_{infix}hindsight_baseline"] = best
            metrics[f"{prefix}_hindsight_{infix}rank1"] = found["results"][best]["rank1"]
    return metrics


def validate_pretraining(
    model,
    shards: ShardFolder,
    subjects,
    pairing: str,
    temperature: float,
    device,
    prefix: str = "val",
    segment_length: int | None = None,
    baselines: dict | None = None,
) -> dict:
    """Identification of held-out subjects from signatures, over every ordered pair of sessions (or rest vs task),
    at full length and on `segment_length`-frame segments (which does not saturate on small cohorts), beside
    `baselines` (precomputed `baseline_metrics`, or raw FC alone), and the NT-Xent loss of their scans.

    Keys: `{prefix}_fingerprint_rank1` (mean over pairs), `_rank1_std` (spread over pairs), `_map`, and with two
    sides `_rank1_a2b` / `_rank1_b2a`; `{prefix}_fingerprint_segment_*` the same on segments; `{prefix}_loss`;
    `{prefix}_subjects`, `{prefix}_subjects_paired`.
    """
    rows = select_rows(shards, subjects)
    scans = scan_set(shards, rows, pairing)
    signatures = encode_scans(model, scans, device)
    found = pairwise_identification(signatures, scans.subjects, scans.sessions) if len(scans) else None
    metrics = {f"{prefix}_subjects": len(set(subjects)), f"{prefix}_subjects_paired": found["subjects"] if found else 0}
    if not found or not found["pairs"]:
        return metrics
    metrics.update(_identification_metrics(found, f"{prefix}_fingerprint"))
    if len(found["pairs"]) == 2:
        metrics[f"{prefix}_fingerprint_rank1_a2b"] = found["pairs"][0]["rank1"]
        metrics[f"{prefix}_fingerprint_rank1_b2a"] = found["pairs"][1]["rank1"]
    if segment_length is not None:
        segments = scans.segments(segment_length)
        if len(segments):
            features = encode_scans(model, segments, device)
            found_segments = pairwise_identification(features, segments.subjects, segments.sessions)
            metrics.update(_identification_metrics(found_segments, f"{prefix}_fingerprint_segment"))
    ids = torch.as_tensor(np.unique(scans.subjects, return_inverse=True)[1])
    if int(torch.bincount(ids).max()) >= 2:
        loss = nt_xent_loss(torch.from_numpy(signatures), ids, temperature=temperature, gather=False)
        metrics[f"{prefix}_loss"] = float(loss)
    if baselines is None and shards.processor.input_type == "roi":
        fc = fc_features(scans.series)
        metrics.update(
            _identification_metrics(pairwise_identification(fc, scans.subjects, scans.sessions), f"{prefix}_fc")
        )
    metrics.update(baselines or {})
    return metrics


@torch.no_grad()
def validate_objective(model, shards: ShardFolder, subjects, device, batch_size: int = 8) -> dict:
    """Mean pretraining loss (e.g. a MnemoDyn objective) over the chosen subjects' whole rows, with masks and noise
    drawn from a fixed seed per batch, so successive validations compare like with like."""
    rows = select_rows(shards, subjects)
    was_training = model.training
    model.eval()
    total = 0.0
    for number, inputs in enumerate(row_batches(shards, rows, device, batch_size)):
        total += float(model(**inputs, seed=number).loss) * inputs["fmri_values"].shape[0]
    model.train(was_training)
    return {"val_rows": len(rows), **({"val_loss": total / len(rows)} if rows else {})}


def phenotype_targets(shards: ShardFolder, rows: list[int], targets: list[str], encode_label=None):
    """Targets of rows: floats (NaN where missing) for regression (`encode_label=None`), class ids from
    `encode_label` (-100 where missing or unknown) otherwise."""
    meta = shards.metadata
    if encode_label is None:
        return np.stack([np.asarray(meta[t][rows], dtype=np.float64) for t in targets], axis=1)
    return np.asarray([encode_label(v) for v in meta[targets[0]][rows]], dtype=np.int64)


def validate_phenotype(model, shards, subjects, targets, problem_type, encode_label, modality, device, prefix="val"):
    rows = select_rows(shards, subjects, modality)
    logits = encode_rows(model, shards, rows, device, output="logits")
    references = phenotype_targets(shards, rows, targets, encode_label)
    metrics = phenotype_metrics(problem_type, logits, references, prefix=prefix)
    metrics[f"{prefix}_rows"] = len(rows)
    return metrics, logits, references, rows
