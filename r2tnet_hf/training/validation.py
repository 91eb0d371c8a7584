"""Validation and test passes of the training loop: signatures of held-out subjects, fingerprinting against the FC
baseline, and phenotype metrics. Every row of the chosen subjects is used; rows that cannot be paired are counted in
the results, never dropped silently.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ..data.streaming import ShardFolder, collate_fmri, decode_array, sample_from_row, window_processor
from ..evaluation.fingerprinting import functional_connectivity, identification
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
def encode_rows(model, shards: ShardFolder, rows: list[int], device, batch_size: int = 8, output: str = "signature"):
    """`output` (e.g. the signature, or logits) of whole rows, as numpy, in the order of `rows`."""
    was_training = model.training
    model.eval()
    results = [getattr(model(**inputs), output).float().cpu().numpy() for inputs in row_batches(shards, rows, device)]
    model.train(was_training)
    return np.concatenate(results) if results else np.zeros((0, 0), np.float32)


def _side_means(features: np.ndarray, rows: list[int], side_of, subjects_of) -> dict[tuple[str, str], np.ndarray]:
    groups = defaultdict(list)
    for feature, row in zip(features, rows):
        side = side_of(row)
        if side is not None:
            groups[(subjects_of[row], side)].append(feature)
    return {key: np.mean(values, axis=0) for key, values in groups.items()}


def fingerprint_pairing(shards: ShardFolder, rows: list[int], pairing: str):
    """Per row, its side ("a"/"b") for identification: rest/task for `modality`, first/second session otherwise."""
    meta = shards.metadata
    if pairing == "modality":
        sides = {"rest": "a", "task": "b"}
        return lambda row: sides.get(meta["modality"][row])
    sessions = defaultdict(set)
    for row in rows:
        sessions[meta["subject"][row]].add(meta["session"][row])
    order = {subject: sorted(found) for subject, found in sessions.items()}

    def side(row):
        found = order[meta["subject"][row]]
        if len(found) < 2:
            return None
        session = meta["session"][row]
        return "a" if session == found[0] else ("b" if session == found[1] else None)

    return side


def identification_metrics(features_a: np.ndarray, features_b: np.ndarray) -> dict[str, float]:
    """Rank-1 both ways (and their mean) and mAP, row i of each side being subject i."""
    subjects = np.arange(len(features_a))
    found = identification(features_a, features_b, subjects, subjects)
    metrics = {key: float(found[key]) for key in ("rank1_a2b", "rank1_b2a", "map")}
    metrics["rank1"] = (metrics["rank1_a2b"] + metrics["rank1_b2a"]) / 2
    return metrics


def paired_features(model, shards: ShardFolder, subjects, pairing: str, device, with_fc: bool = True) -> dict:
    """Signatures (and FC) of the chosen subjects, averaged per subject and side ("a"/"b", see `fingerprint_pairing`).

    Returns `{"subjects": [...], "a", "b"` (signatures, row i = subject i), `"fc_a", "fc_b"` (when ROI data),
    `"unpaired": [...]}`; subjects without rows on both sides are listed in `unpaired`, not dropped silently.
    """
    rows = select_rows(shards, subjects)
    meta = shards.metadata
    side_of = fingerprint_pairing(shards, rows, pairing)
    by_side = _side_means(encode_rows(model, shards, rows, device), rows, side_of, meta["subject"])
    paired = sorted(s for s in set(subjects) if (s, "a") in by_side and (s, "b") in by_side)
    result = {
        "subjects": paired,
        "unpaired": sorted(set(subjects) - set(paired)),
        "a": np.stack([by_side[(s, "a")] for s in paired]) if paired else None,
        "b": np.stack([by_side[(s, "b")] for s in paired]) if paired else None,
    }
    if with_fc and shards.processor.input_type == "roi" and paired:
        fc = np.stack([functional_connectivity(decode_array(shards.read_row(row))) for row in rows])
        fc_by_side = _side_means(fc, rows, side_of, meta["subject"])
        result["fc_a"] = np.stack([fc_by_side[(s, "a")] for s in paired])
        result["fc_b"] = np.stack([fc_by_side[(s, "b")] for s in paired])
    return result


def validate_pretraining(
    model, shards: ShardFolder, subjects, pairing: str, temperature: float, device, prefix: str = "val"
) -> dict:
    """Rank-1 identification of held-out subjects from signatures and from FC, and the NT-Xent loss of their pairs."""
    found = paired_features(model, shards, subjects, pairing, device)
    metrics = {f"{prefix}_subjects": len(set(subjects)), f"{prefix}_subjects_paired": len(found["subjects"])}
    if len(found["subjects"]) < 2:
        return metrics
    a, b = found["a"], found["b"]
    for key, value in identification_metrics(a, b).items():
        metrics[f"{prefix}_fingerprint_{key}"] = value
    ids = torch.arange(len(a)).repeat(2)
    metrics[f"{prefix}_loss"] = float(
        nt_xent_loss(torch.from_numpy(np.concatenate([a, b])), ids, temperature=temperature, gather=False)
    )
    if "fc_a" in found:
        for key, value in identification_metrics(found["fc_a"], found["fc_b"]).items():
            metrics[f"{prefix}_fc_{key}"] = value
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
