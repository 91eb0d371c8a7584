"""Fingerprinting a manifest's scans with a saved R2T-Net: the logic behind `r2tnet fingerprint`.

Steps: load the model and its processor; read and prepare every scan the report needs; identify the scored subjects
between every ordered pair of sessions (or rest vs task), from whole scans and from non-overlapping segments of each
asked length; put the model beside the classical baselines on the same scans; write `fingerprint.json`,
`similarity.png` and `similarity_baseline.png`.

Baselines. With `--splits`, they are fitted on the `train` subjects, PCA's k, each baseline's variant and the
strongest of them are chosen on the `validation` subjects, and the `test` subjects are scored (everything in
`r2tnet_hf.evaluation.baselines`). Without a splits file only raw FC can be shown (the others need subjects to be
fitted on), and every subject of the manifest is scored.

Whole scans: a scan longer than the processor's `window_length` is cut into consecutive windows (the last one padded
and masked), and its signature is the mean of the window signatures weighted by their real frames, L2-normalised
again. Segments are encoded as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import FmriInputError
from ..utils import atomic_write_text
from .fingerprinting import ScanSet, fc_features, icc, pairwise_identification, plot_similarity, similarity_matrix

PAIRINGS = ("session", "modality")


def load_encoder(model_dir: str | os.PathLike):
    """(`R2TNetModel` in eval mode, `FmriProcessor`) from a folder written by `save_pretrained`.

    The folder may hold an `R2TNetModel` or a head model (`R2TNetForContrastivePretraining`,
    `R2TNetForPhenotypePrediction`): `AutoModel` loads the base `R2TNetModel` from either.
    """
    from transformers import AutoModel

    import r2tnet_hf  # noqa: F401  (registers the Auto classes)

    from ..hub.loading import from_pretrained_checked, load_processor

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FmriInputError.for_source(model_dir, expected="a model folder with config.json", found="none")
    if not (model_dir / "preprocessor_config.json").is_file():
        raise FmriInputError.for_source(model_dir, expected="preprocessor_config.json beside the weights", found="none")
    model = from_pretrained_checked(AutoModel, model_dir)
    encoder = getattr(model, model.base_model_prefix, model) if not hasattr(model, "projection") else model
    if not hasattr(encoder, "projection"):
        raise FmriInputError.for_source(
            model_dir, expected="an R2T-Net model (with a signature)", found=type(model).__name__
        )
    processor = load_processor(model_dir)
    if processor.input_type != "roi":
        raise FmriInputError.for_source(
            model_dir, expected="an ROI model (the FC baseline needs ROI series)", found=f"{processor.input_type} input"
        )
    return encoder.eval(), processor


def read_scans(source: str | os.PathLike):
    """`(manifest, scan_of)`: the scans of a manifest file, or of a folder written by `r2tnet convert` (each scan read
    back from its rows), and a function giving what the processor takes for a record."""
    from ..data.manifest import Manifest, read_manifest
    from ..data.streaming import ShardFolder

    source = Path(source)
    if source.is_dir() and (source / "manifest.json").is_file():
        shards = ShardFolder(source)
        scans = shards.scans()
        rows = {record.index: members for record, members in scans}
        manifest = Manifest([record for record, _ in scans], shards.phenotype_columns, source / "manifest.json")
        return manifest, lambda record: shards.read_scan(rows[record.index])
    manifest = read_manifest(source)
    return manifest, manifest.resolve


def side_of(record, pairing: str) -> str:
    return record.modality if pairing == "modality" else record.session


def select_records(manifest, pairing: str = "session", sessions=None) -> tuple[list, list[str]]:
    """The records identification uses, and the subjects left out (scans on one side only).

    `session`: every session is a side (only rest scans when the manifest has rest and task scans); `modality`:
    rest vs task. `sessions` keeps only those sides (session names, or `rest`/`task`).
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    records = manifest.records
    if pairing == "session" and len({record.modality for record in records}) > 1:
        records = [record for record in records if record.modality == "rest"]
    if sessions:
        known = {side_of(record, pairing) for record in records}
        missing = sorted(set(sessions) - known)
        if missing:
            raise FmriInputError.for_source(
                manifest.source, expected=f"sessions {missing} ({pairing} pairing)", found=f"{sorted(known)}"
            )
        records = [record for record in records if side_of(record, pairing) in set(sessions)]
    sides: dict[str, set] = {}
    for record in records:
        sides.setdefault(record.subject, set()).add(side_of(record, pairing))
    paired = {subject for subject, found in sides.items() if len(found) >= 2}
    unpaired = sorted({record.subject for record in manifest.records} - paired)
    return [record for record in records if record.subject in paired], unpaired


def encode_series(encoder, processor, series_list, batch_size: int = 8, progress: bool = True) -> np.ndarray:
    """Signatures `(num_scans, signature_dim)` of prepared whole scans (see the module docstring for windows)."""
    import torch
    from tqdm.auto import tqdm

    signatures = []
    for series in tqdm(series_list, desc="encoding scans", disable=not progress, leave=False):
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


def encode_scans(model, scans: ScanSet, device="cpu", batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """Signatures `(rows, signature_dim)` of a `ScanSet`'s series, as they are (padded and masked per batch)."""
    import torch
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    results = []
    starts = range(0, len(scans), batch_size)
    for start in tqdm(starts, desc="encoding segments", disable=not progress, leave=False):
        chunk = range(start, min(start + batch_size, len(scans)))
        longest = max(np.shape(scans.series[i])[-1] for i in chunk)
        values = np.zeros((len(chunk), *np.shape(scans.series[start])[:-1], longest), dtype=np.float32)
        mask = np.zeros((len(chunk), longest), dtype=np.int64)
        for row, i in enumerate(chunk):
            length = np.shape(scans.series[i])[-1]
            values[row, ..., :length] = scans.series[i]
            mask[row, :length] = 1
        inputs = {
            "fmri_values": torch.from_numpy(values).to(device),
            "attention_mask": torch.from_numpy(mask).to(device),
            "repetition_time": torch.tensor([scans.repetition_times[i] for i in chunk], device=device),
        }
        with torch.no_grad():
            results.append(model(**inputs).signature.float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(results) if results else np.zeros((0, 0), np.float32)


def _scan_set(records, series, pairing) -> ScanSet:
    return ScanSet(
        [s.data for s in series],
        [r.subject for r in records],
        [side_of(r, pairing) for r in records],
        [r.task for r in records],
        repetition_times=[s.repetition_time for s in series],
    )


def _summary(found: dict) -> dict:
    keys = ("rank1", "rank1_std", "rank1_min", "rank1_max", "map", "queries", "subjects")
    return {key: found[key] for key in keys} | {"pairs": found["pairs"]}


def run_fingerprint_evaluation(
    model_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    pairing: str = "session",
    batch_size: int = 8,
    progress: bool = True,
    sessions=None,
    segment_lengths=(),
    splits_path: str | os.PathLike | None = None,
    atlas: str | os.PathLike | None = None,
    header: str = "auto",
) -> dict:
    """Encode, identify and score a manifest's scans beside the baselines; write the report and the plots.

    `header` says whether TSV/CSV scans start with a header row (`"auto"`, `"yes"`, `"no"`).

    `manifest_path` is a manifest file or a folder of shards written by `r2tnet convert`; `atlas` (a parcellation
    file) replaces the one the model's processor recorded, for volume or dense CIFTI scans.

    `output_dir` must exist (the CLI passes a staging folder and renames it when everything is written). Bad scans
    raise `FmriInputError` naming the file.

    Returns:
        `dict`: `lengths` (one entry per scored length, `"full"` and each segment length: `model` and every
        baseline's `pairwise_identification` summary, `strongest` (chosen on validation), its `description` and
        what validation chose, `best_on_test` (the best baseline on the scored subjects, in hindsight),
        `frames_unused`), the full-length ICC(3,1) of model and raw FC, and what was scored (`subjects`, `pairing`,
        `sessions`, `unpaired`, `splits`, ...).
    """
    from ..data.splits import load_splits

    segment_lengths = _checked_lengths(batch_size, segment_lengths)
    manifest, scan_of = read_scans(manifest_path)
    records, unpaired = select_records(manifest, pairing, sessions)
    splits = load_splits(splits_path) if splits_path else None
    needed, test_subjects = _needed_records(records, splits, splits_path, manifest_path, pairing)
    encoder, processor, series = _encoder_and_series(model_dir, atlas, needed, scan_of, header, progress)
    every = _scan_set(needed, series, pairing)
    test = every.subset(test_subjects)
    fitting = _fitting_scans(every, splits, splits_path) if splits else None
    test_series = [s for s, r in zip(series, needed) if r.subject in test_subjects]
    whole = encode_series(encoder, processor, test_series, batch_size, progress)
    lengths, whole_baseline = _score_lengths(encoder, whole, test, segment_lengths, fitting, batch_size, progress)
    report: dict = {"lengths": lengths}
    _add_icc(report, whole, fc_features(test.series), test)
    report.update(
        model=str(model_dir),
        manifest=str(manifest_path),
        splits=None if splits_path is None else str(splits_path),
        pairing=pairing,
        sessions=sorted(set(test.sessions)),
        subjects=len(test_subjects),
        scans=len(test_series),
        unpaired=unpaired,
        signature_dim=int(whole.shape[1]),
        fc_features=int(fc_features(test.series[:1]).shape[1]),
    )
    similarity_plots(whole, test, whole_baseline, Path(output_dir), pairing, held_out=splits is not None)
    atomic_write_text(Path(output_dir) / "fingerprint.json", json.dumps(_json_ready(report), indent=2) + "\n")
    return report


def _checked_lengths(batch_size: int, segment_lengths) -> list[int]:
    """The segment lengths to score, sorted and without repeats, once the batch size and they are checked."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    segment_lengths = sorted({int(length) for length in segment_lengths or ()})
    if any(length < 3 for length in segment_lengths):
        raise FmriInputError.for_source("--segment-length", expected="at least 3 frames", found=f"{segment_lengths}")
    return segment_lengths


def _needed_records(records, splits, splits_path, manifest_path, pairing: str) -> tuple[list, set[str]]:
    """The records to read (the scored subjects', and with splits the fitting subjects' too) and the scored subjects.

    Without splits every subject is scored; with them, the `test` subjects.
    """
    scored = set(splits["test"]) if splits else {r.subject for r in records}
    if splits and not splits["test"]:
        raise FmriInputError.for_source(splits_path, expected="test subjects to score", found="an empty test split")
    fitting = set(splits["train"]) | set(splits["validation"]) if splits else set()
    needed = [r for r in records if r.subject in scored | fitting]
    test_subjects = {r.subject for r in records if r.subject in scored}
    if len(test_subjects) < 2:
        raise FmriInputError.for_source(
            splits_path or manifest_path,
            expected=f"at least 2 scored subjects with scans in two {pairing}s",
            found=f"{len(test_subjects)}",
        )
    return needed, test_subjects


def _fitting_scans(every: ScanSet, splits: dict, splits_path) -> tuple[ScanSet, ScanSet]:
    """The `train` and `validation` scans that fit and choose the baselines."""
    train, validation = every.subset(splits["train"]), every.subset(splits["validation"])
    if len({*train.subjects}) < 2 or len({*validation.subjects}) < 1:
        raise FmriInputError.for_source(
            splits_path,
            expected="train subjects (2 or more) and validation subjects with scans in the manifest to fit and choose "
            "the baselines",
            found=f"{len(set(train.subjects))} and {len(set(validation.subjects))}",
        )
    return train, validation


def _encoder_and_series(model_dir, atlas, records, scan_of, header: str, progress: bool) -> tuple:
    """The model, its processor (with `atlas` in place of the recorded one, if given) and every record's prepared
    series."""
    from tqdm.auto import tqdm

    encoder, processor = load_encoder(model_dir)
    if atlas is not None:
        from ..inference import checked_atlas_path

        processor.atlas_file = checked_atlas_path(atlas)
    series = [
        processor.prepare(scan_of(record), record.repetition_time, header=header)
        for record in tqdm(records, desc="reading", disable=not progress, leave=False)
    ]
    return encoder, processor, series


def _score_lengths(encoder, whole, test: ScanSet, segment_lengths, fitting, batch_size: int, progress: bool):
    """Every scored length's report entry (`"full"`, then each segment length) and the strongest baseline fitted for
    whole scans, for the plot (`None` without splits). `whole` holds the test scans' whole-scan signatures."""
    lengths, whole_baseline = {}, None
    for length in [None, *segment_lengths]:
        if length is None:
            signatures, rows = whole, test
        else:
            rows = test.segments(length)
            if not len(rows):
                raise FmriInputError.for_source(
                    "--segment-length", expected=f"scans of at least {length} frames", found="shorter scans only"
                )
            signatures = encode_scans(encoder, rows, batch_size=batch_size, progress=progress)
        entry, strongest = _score_length(signatures, rows, test, length, fitting)
        lengths["full" if length is None else str(length)] = entry
        if length is None:
            whole_baseline = strongest
    return lengths, whole_baseline


def _score_length(signatures, rows: ScanSet, test: ScanSet, length: int | None, fitting) -> tuple[dict, tuple | None]:
    """One scored length (`None`: whole scans): the model's identification on `rows` beside the baselines'.

    `fitting` is the `(train, validation)` scans, or `None` (no splits: raw FC only). Returns the report's entry and
    the strongest baseline as `(name, fitted)` (`None` without splits).
    """
    from .baselines import baseline_identification, best_in_hindsight

    entry = {"model": _summary(pairwise_identification(signatures, rows.subjects, rows.sessions))}
    entry["frames_unused"] = test.frames_unused(length)
    if fitting is None:
        fc = fc_features(rows.series)
        entry["baselines"] = {"raw": _summary(pairwise_identification(fc, rows.subjects, rows.sessions))}
        entry["strongest"] = None
        return entry, None
    found = baseline_identification(*fitting, test, length)
    selection, strongest = found["selection"], found["strongest"]
    entry["baselines"] = {key: _summary(value) for key, value in found["results"].items()}
    entry["strongest"] = strongest
    entry["description"] = selection.describe(strongest)
    entry["baseline_validation"] = selection.validation
    entry["baseline_choices"] = selection.choices
    entry["best_on_test"] = best_in_hindsight(entry["baselines"], strongest)
    return entry, (strongest, selection.baselines[strongest])


def _session_means(features: np.ndarray, scans: ScanSet, subjects: list[str], session: str) -> np.ndarray:
    keys = list(zip(scans.subjects, scans.sessions))
    return np.stack([features[[i for i, key in enumerate(keys) if key == (s, session)]].mean(axis=0) for s in subjects])


def _add_icc(report: dict, signatures: np.ndarray, fc: np.ndarray, test: ScanSet) -> None:
    """ICC(3,1) between the first two sessions, each subject's scans of a session averaged."""
    first, second = sorted(set(test.sessions))[:2]
    on = {side: {s for s, v in zip(test.subjects, test.sessions) if v == side} for side in (first, second)}
    subjects = sorted(on[first] & on[second])
    for key, features in (("model", signatures), ("fc", fc)):
        values = {"mean": float("nan"), "median": float("nan")}
        if len(subjects) >= 2:
            values = icc(*(_session_means(features, test, subjects, side) for side in (first, second)))
        report[f"{key}_icc_mean"], report[f"{key}_icc_median"] = values["mean"], values["median"]


def _side_name(side: str, pairing: str) -> str:
    """How a plot names one side of the comparison: `rest scans`, or `session run-01`."""
    return f"{side} scans" if pairing == "modality" else f"session {side}"


def similarity_plots(signatures, test: ScanSet, baseline, output: Path, pairing: str, held_out: bool) -> dict:
    """Write the full-length similarity between the first two sides, model (`similarity.png`) and baseline
    (`similarity_baseline.png`), on one colour scale; return the figures by file name.

    `baseline` is the strongest baseline as `(name, fitted)`, or `None` (without splits) for raw FC. `held_out` says
    whether the scored subjects are test subjects never trained on.
    """
    first, second = sorted(set(test.sessions))[:2]
    rows_a = [i for i, v in enumerate(test.sessions) if v == first]
    rows_b = [i for i, v in enumerate(test.sessions) if v == second]
    if baseline is not None:
        strongest, fitted = baseline
        baseline_features = fitted.transform(test)
        baseline_title = f"Strongest baseline: {strongest} FC (fitted on training subjects)"
        baseline_colours = f"Pearson r between the two scans' {strongest} FC"
    else:
        baseline_features = fc_features(test.series)
        baseline_title, baseline_colours = "Raw FC (Finn et al. 2015)", "Pearson r between the two scans' raw FC"
    matrices = {
        "similarity.png": (
            similarity_matrix(signatures[rows_a], signatures[rows_b]),
            "R2T-Net signatures",
            "Pearson r between the two scans' signatures",
        ),
        "similarity_baseline.png": (
            similarity_matrix(baseline_features[rows_a], baseline_features[rows_b]),
            baseline_title,
            baseline_colours,
        ),
    }
    limits = (min(m.min() for m, *_ in matrices.values()), max(m.max() for m, *_ in matrices.values()))
    sides = (_side_name(first, pairing), _side_name(second, pairing))
    who = f"{len(set(test.subjects))} {'held-out ' if held_out else ''}subjects"
    return {
        name: plot_similarity(
            matrix,
            [test.subjects[i] for i in rows_a],
            output / name,
            column_labels=[test.subjects[i] for i in rows_b],
            title=f"{title}\nsimilarity, {sides[0]} vs {sides[1]}, {who}",
            axis_labels=(f"subjects, {sides[0]}", f"subjects, {sides[1]}"),
            limits=limits,
            colorbar_label=colours,
        )
        for name, (matrix, title, colours) in matrices.items()
    }


def length_label(name: str) -> str:
    """A scored length as a report names it (`"full"`, `"50"`) in words: `whole scans`, `50-frame segments`."""
    return "whole scans" if name == "full" else f"{name}-frame segments"


def rank1_text(found: dict) -> str:
    """A Rank-1 summary as printed: `0.917 ± 0.093` (mean ± std over session pairs)."""
    return f"{found['rank1']:.3f} ± {found['rank1_std']:.3f}"


def comparison_rows(report: dict) -> list[dict]:
    """The model beside the baselines, one row per scored length of a report made with splits.

    Each row: `label` (`length_label`), `model`, `strongest` (the name of the baseline chosen on validation) and its
    summary `baseline`, `raw` (raw FC), and `hindsight` (the best baseline on the scored subjects, by name) with its
    summary `hindsight_baseline` when it is not the strongest, else both `None`.
    """
    rows = []
    for name, entry in report["lengths"].items():
        strongest, best = entry["strongest"], entry.get("best_on_test")
        hindsight = best if best and best != strongest else None
        rows.append(
            {
                "label": length_label(name),
                "model": entry["model"],
                "strongest": strongest,
                "baseline": entry["baselines"][strongest],
                "raw": entry["baselines"]["raw"],
                "hindsight": hindsight,
                "hindsight_baseline": entry["baselines"][hindsight] if hindsight else None,
            }
        )
    return rows


def _json_ready(value):
    """NaN → null recursively, so that the file is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def format_report(report: dict) -> str:
    """The model beside the strongest baseline and raw FC, per length, as printed by `r2tnet fingerprint`."""
    splits = report["splits"] is not None
    lines = [
        f"{report['subjects']} {'test ' if splits else ''}subjects, {report['scans']} scans, Rank-1 over every ordered "
        f"pair of {'sessions' if report['pairing'] == 'session' else 'modalities'} ({', '.join(report['sessions'])}); "
        "mean ± std over pairs [min, max]",
    ]
    if not splits:
        lines.append("  (no --splits: the fitted baselines need training subjects, so only raw FC is shown)")
    for name, entry in report["lengths"].items():
        lines.append(f"  {length_label(name)}:")
        rows = [("model", entry["model"])]
        if entry["strongest"]:
            rows.append((f"strongest baseline: {entry['strongest']}", entry["baselines"][entry["strongest"]]))
            if entry["best_on_test"] != entry["strongest"]:
                best = entry["best_on_test"]
                rows.append((f"best on test (hindsight): {best}", entry["baselines"][best]))
        rows.append(("raw FC (Finn 2015)", entry["baselines"]["raw"]))
        for title, found in rows:
            lines.append(
                f"    {title:34s} {found['rank1']:.3f} ± {found['rank1_std']:.3f} "
                f"[{found['rank1_min']:.3f}, {found['rank1_max']:.3f}]  mAP {found['map']:.3f}"
            )
    lines.append(
        f"  ICC(3,1) mean, whole scans: model {report['model_icc_mean']:.3f}, raw FC {report['fc_icc_mean']:.3f}"
    )
    if report["unpaired"]:
        lines.append(f"  left out (scans in one {report['pairing']} only): {', '.join(report['unpaired'])}")
    return "\n".join(lines)
