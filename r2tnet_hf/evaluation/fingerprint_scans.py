"""Fingerprinting a manifest's scans with a saved R2T-Net: the logic behind `r2tnet fingerprint`.

Steps: load the model and its processor from a folder; pair each subject's scans across two sessions (the first two
session names in sorted order; rest scans only when the manifest has any) or across modalities (rest vs task);
encode whole scans; compute the Finn et al. (2015) FC baseline on the same prepared scans; score both with
`fingerprint_report`; write `fingerprint.json`, `similarity.png` and `similarity_fc.png`.

Whole scans: if the processor has a `window_length` and a scan is longer, the scan is cut into consecutive windows
(`all_windows=True`, the last one padded and masked), each window is encoded, and the scan's signature is the mean
of its window signatures weighted by their real frames, L2-normalised again. Shorter scans are one padded window.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import FmriInputError
from ..utils import atomic_write_text
from .fingerprinting import fc_features, fingerprint_report, plot_similarity, similarity_matrix

PAIRINGS = ("session", "modality")


def load_encoder(model_dir: str | os.PathLike):
    """(`R2TNetModel` in eval mode, `FmriProcessor`) from a folder written by `save_pretrained`.

    The folder may hold an `R2TNetModel` or a head model (`R2TNetForContrastivePretraining`,
    `R2TNetForPhenotypePrediction`): `AutoModel` loads the base `R2TNetModel` from either.
    """
    from transformers import AutoFeatureExtractor, AutoModel

    import r2tnet_hf  # noqa: F401  (registers the Auto classes)

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FmriInputError.for_source(model_dir, expected="a model folder with config.json", found="none")
    if not (model_dir / "preprocessor_config.json").is_file():
        raise FmriInputError.for_source(model_dir, expected="preprocessor_config.json beside the weights", found="none")
    model = AutoModel.from_pretrained(model_dir)
    encoder = getattr(model, model.base_model_prefix, model) if not hasattr(model, "projection") else model
    if not hasattr(encoder, "projection"):
        raise FmriInputError.for_source(
            model_dir, expected="an R2T-Net model (with a signature)", found=type(model).__name__
        )
    processor = AutoFeatureExtractor.from_pretrained(model_dir)
    if processor.input_type != "roi":
        raise FmriInputError.for_source(
            model_dir, expected="an ROI model (the FC baseline needs ROI series)", found=f"{processor.input_type} input"
        )
    return encoder.eval(), processor


def pair_scans(manifest, pairing: str = "session") -> tuple[list, list, list[str]]:
    """Split a manifest's records into side A and side B; returns (records_a, records_b, unpaired subjects).

    `session`: side A holds each subject's scans of its first session, side B those of its second (session names
    sorted); only rest scans when the manifest has any. `modality`: side A the rest scans, side B the task scans.
    Subjects with scans on one side only are returned as unpaired and left out of both sides.
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    records = manifest.records
    side_a, side_b = {}, {}
    if pairing == "session":
        if any(record.modality == "rest" for record in records):
            records = [record for record in records if record.modality == "rest"]
        sessions = {}
        for record in records:
            sessions.setdefault(record.subject, set()).add(record.session)
        for record in records:
            ordered = sorted(sessions[record.subject])
            if len(ordered) >= 2 and record.session in ordered[:2]:
                target = side_a if record.session == ordered[0] else side_b
                target.setdefault(record.subject, []).append(record)
    else:
        for record in records:
            (side_a if record.modality == "rest" else side_b).setdefault(record.subject, []).append(record)
    subjects = sorted(set(side_a) | set(side_b) | {record.subject for record in manifest.records})
    paired = [subject for subject in subjects if subject in side_a and subject in side_b]
    unpaired = [subject for subject in subjects if subject not in paired]
    records_a = [record for subject in paired for record in side_a[subject]]
    records_b = [record for subject in paired for record in side_b[subject]]
    return records_a, records_b, unpaired


def encode_series(encoder, processor, series_list, batch_size: int = 8, progress: bool = True) -> np.ndarray:
    """Signatures `(num_scans, signature_dim)` of prepared whole scans (see the module docstring for windows)."""
    import torch
    from tqdm.auto import tqdm

    signatures = []
    for series in tqdm(series_list, desc="encoding", disable=not progress, leave=False):
        windows = processor.window_length is not None and series.num_timepoints > processor.window_length
        batch = processor(series, all_windows=windows, return_tensors="pt")
        rows = []
        with torch.no_grad():
            for start in range(0, len(batch["fmri_values"]), batch_size):
                chunk = {key: batch[key][start : start + batch_size] for key in processor.model_input_names}
                rows.append(encoder(**chunk).signature.double())
        rows = torch.cat(rows)
        weights = batch["attention_mask"].sum(dim=1).double()
        mean = (rows * weights[:, None]).sum(dim=0) / weights.sum()
        signatures.append(torch.nn.functional.normalize(mean, dim=0).numpy())
    return np.stack(signatures)


def run_fingerprint_evaluation(
    model_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    pairing: str = "session",
    batch_size: int = 8,
    progress: bool = True,
) -> dict:
    """Encode, pair and score a manifest's scans; write `fingerprint.json`, `similarity.png`, `similarity_fc.png`.

    `output_dir` must exist (the CLI passes a staging folder and renames it when everything is written).
    Bad scans raise `FmriInputError` naming the file.

    Returns:
        The report of `fingerprint_report` plus `model`, `manifest`, `pairing`, `side_a`, `side_b` and `unpaired`.
    """
    from tqdm.auto import tqdm

    from ..data.manifest import read_manifest

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    manifest = read_manifest(manifest_path)
    records_a, records_b, unpaired = pair_scans(manifest, pairing)
    if len({r.subject for r in records_a}) < 2:
        raise FmriInputError.for_source(
            manifest_path,
            expected=f"at least 2 subjects with scans on both sides ({pairing} pairing)",
            found=f"{len({r.subject for r in records_a})}",
        )
    encoder, processor = load_encoder(model_dir)
    records = records_a + records_b
    series = [
        processor.prepare(manifest.resolve(record), record.repetition_time)
        for record in tqdm(records, desc="reading", disable=not progress, leave=False)
    ]
    signatures = encode_series(encoder, processor, series, batch_size, progress)
    fc = fc_features(series)
    count = len(records_a)
    subjects_a = [record.subject for record in records_a]
    subjects_b = [record.subject for record in records_b]
    report = fingerprint_report(signatures[:count], signatures[count:], fc[:count], fc[count:], subjects_a, subjects_b)
    side = {"session": ("first session", "second session"), "modality": ("rest", "task")}[pairing]
    report.update(
        model=str(model_dir),
        manifest=str(manifest_path),
        pairing=pairing,
        side_a=side[0],
        side_b=side[1],
        unpaired=unpaired,
        signature_dim=int(signatures.shape[1]),
        fc_features=int(fc.shape[1]),
    )
    output_dir = Path(output_dir)
    labels_a = [f"{r.subject} {r.session}" if pairing == "session" else f"{r.subject} {r.task}" for r in records_a]
    labels_b = [f"{r.subject} {r.session}" if pairing == "session" else f"{r.subject} {r.task}" for r in records_b]
    plot_similarity(
        similarity_matrix(signatures[:count], signatures[count:]),
        labels_a,
        output_dir / "similarity.png",
        column_labels=labels_b,
        title=f"model signatures: {side[0]} vs {side[1]} (Pearson r)",
    )
    plot_similarity(
        similarity_matrix(fc[:count], fc[count:]),
        labels_a,
        output_dir / "similarity_fc.png",
        column_labels=labels_b,
        title=f"FC baseline: {side[0]} vs {side[1]} (Pearson r)",
    )
    atomic_write_text(output_dir / "fingerprint.json", json.dumps(_json_ready(report), indent=2) + "\n")
    return report


def _json_ready(report: dict) -> dict:
    """NaN → null, so that the file is strict JSON."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in report.items()}


def format_report(report: dict) -> str:
    """The model and FC baseline side by side, as printed by `r2tnet fingerprint`."""
    lines = [
        f"{report['subjects']} subjects, {report['rows_a']} {report['side_a']} scans vs {report['rows_b']} "
        f"{report['side_b']} scans ({report['pairing']} pairing)",
        f"{'':22s}{'model':>10s}{'FC (Finn 2015)':>16s}",
    ]
    rows = (
        ("Rank-1 A→B", "rank1_a2b"),
        ("Rank-1 B→A", "rank1_b2a"),
        ("mAP", "map"),
        ("ICC(3,1) mean", "icc_mean"),
        ("ICC(3,1) median", "icc_median"),
    )
    for title, key in rows:
        model_key = key if key.startswith("icc") else f"model_{key}"
        lines.append(f"  {title:20s}{report[model_key]:>10.3f}{report[f'fc_{key}']:>16.3f}")
    if report["unpaired"]:
        lines.append(f"  left out (scans on one side only): {', '.join(report['unpaired'])}")
    return "\n".join(lines)
