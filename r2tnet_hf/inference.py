"""Inference over many scans: phenotype predictions (`r2tnet predict`) and brain signatures (`r2tnet signatures`).

- **Inputs:** a manifest (rest rows by default, or all) or a folder of scan files (`.tsv`/`.csv`/`.npy`/CIFTI-2
  series/NIfTI, searched recursively; files named `manifest.*`, `participants.tsv`, `*_events.tsv` and
  `*.skipped.tsv` are not scans). For folders, subject and session come from BIDS-like names (`sub-X_ses-Y`), else the
  subject is the file stem.
- **Whole scans:** each scan is cut by the model's processor into every consecutive window (`all_windows=True`; the
  last one padded and masked, never wrapped). Regression outputs and class probabilities are averaged over the
  windows of a scan; signatures are averaged and L2-normalised again. A processor with no `window_length` gives one
  window, the whole scan.
- **Bad scans** (anything `FmriInputError` names: unreadable, NaN, wrong V or parcel order, no TR, too short; and
  any other expected failure of one scan, `r2tnet_hf.errors.expected_failure_line`: I/O, decoding, memory) are
  skipped, listed on stderr and in `<output>.skipped.tsv` (`path`, `reason`); the good rows are still written and the
  command exits with status 2.
- Outputs are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import functools
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data.io import FmriSeries
from .data.manifest import BIDS_ENTITY, read_manifest
from .errors import FmriInputError, expected_failure_line
from .utils import atomic_path, atomic_write_text

SCAN_SUFFIXES = (".tsv", ".csv", ".npy", ".dtseries.nii", ".ptseries.nii", ".nii", ".nii.gz")
NOT_SCANS = ("manifest.tsv", "manifest.csv", "participants.tsv")


@dataclass
class ScanItem:
    subject: str
    session: str
    path: Path
    repetition_time: float | None = None
    load: Callable[[], FmriSeries] | None = None  # shard rows: the stored series; files are read by the processor

    def scan(self):
        """What the processor takes: the file's path, or the series stored in shards."""
        return self.load() if self.load is not None else str(self.path)


@dataclass
class InferenceResult:
    items: list[ScanItem] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)
    num_windows: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _is_scan_file(path: Path) -> bool:
    name = path.name.lower()
    if not path.is_file() or name in NOT_SCANS or name.endswith(("_events.tsv", ".skipped.tsv")):
        return False
    return name.endswith(SCAN_SUFFIXES)


def _is_atlas_file(path: Path, atlases: set[Path]) -> bool:
    """Parcellations kept beside the scans: the atlas in use, CIFTI label files, and BIDS label images
    (`*_dseg.nii[.gz]`, `atlas-*`/`tpl-*` NIfTI)."""
    name = path.name.lower()
    if path.resolve() in atlases or name.endswith(".dlabel.nii"):
        return True
    if name.endswith((".tsv", ".csv")):  # a label table: BIDS `*_dseg.tsv`, or the names beside a label image
        stem = path.name[: -len(path.suffix)]
        beside = any(path.with_name(stem + suffix).is_file() for suffix in (".nii", ".nii.gz", ".dlabel.nii"))
        return "_dseg." in name or beside
    return name.endswith((".nii", ".nii.gz")) and ("_dseg." in name or name.startswith(("atlas-", "tpl-")))


def scan_identity(path: Path) -> tuple[str, str]:
    """`(subject, session)` from a BIDS-like file name; else `(file stem, "")`."""
    entities = dict(BIDS_ENTITY.findall(path.name))
    if "sub" in entities:
        return f"sub-{entities['sub']}", f"ses-{entities['ses']}" if "ses" in entities else ""
    name = path.name
    for suffix in sorted(SCAN_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], ""
    return path.stem, ""


def collect_scans(
    source: str | os.PathLike,
    modality: str = "rest",
    repetition_time: float | None = None,
    atlases: tuple[str | os.PathLike | None, ...] = (),
) -> list[ScanItem]:
    """The scans of a manifest (`modality` `"rest"`, `"task"` or `"all"`), of a folder of scan files (atlas files in
    it, `atlases` and the name patterns of `_is_atlas_file`, are not scans), or of a folder written by `convert`."""
    source = Path(source)
    if source.is_dir() and (source / "manifest.json").is_file():
        return _shard_scans(source, modality)
    if source.is_dir():
        skip = {Path(atlas).resolve() for atlas in atlases if atlas}
        files = sorted(p for p in source.rglob("*") if _is_scan_file(p) and not _is_atlas_file(p, skip))
        if not files:
            raise FmriInputError.for_source(
                source, expected=f"scan files ({', '.join(SCAN_SUFFIXES)})", found="none in the folder"
            )
        return [ScanItem(*scan_identity(p), p, repetition_time) for p in files]
    manifest = read_manifest(source)
    records = [r for r in manifest.records if modality == "all" or r.modality == modality]
    if not records:
        raise FmriInputError.for_source(source, expected=f"{modality} rows", found="none in the manifest")
    return [ScanItem(r.subject, r.session, manifest.resolve(r), r.repetition_time or repetition_time) for r in records]


def _shard_scans(folder: Path, modality: str) -> list[ScanItem]:
    """The scans of a folder written by `r2tnet convert`, each read from its rows."""
    from .data.streaming import ShardFolder

    shards = ShardFolder(folder)
    scans = [(r, rows) for r, rows in shards.scans() if modality == "all" or r.modality == modality]
    if not scans:
        raise FmriInputError.for_source(folder, expected=f"{modality} scans", found="none in the shards")
    return [
        ScanItem(r.subject, r.session, Path(r.path), r.repetition_time, functools.partial(shards.read_scan, rows))
        for r, rows in scans
    ]


def _pad_batch(windows: list[tuple[np.ndarray, np.ndarray, float]], device) -> dict:
    length = max(values.shape[-1] for values, _, _ in windows)
    values = np.zeros((len(windows), *windows[0][0].shape[:-1], length), dtype=np.float32)
    mask = np.zeros((len(windows), length), dtype=np.int64)
    for i, (v, m, _) in enumerate(windows):
        values[i, ..., : v.shape[-1]] = v
        mask[i, : m.shape[-1]] = m
    trs = np.asarray([tr for _, _, tr in windows], dtype=np.float32)
    return {
        "fmri_values": torch.from_numpy(values).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
        "repetition_time": torch.from_numpy(trs).to(device),
    }


def window_outputs(model, batch: dict, kind: str) -> torch.Tensor:
    """Per-window outputs to average: signatures, regression values, or class probabilities."""
    output = model(**batch, return_dict=True)
    if kind == "signatures":
        return output.signature
    problem_type = model.config.problem_type or (
        "regression" if model.config.num_labels == 1 else "single_label_classification"
    )
    if problem_type == "single_label_classification":
        return output.logits.softmax(dim=-1)
    if problem_type == "multi_label_classification":
        return output.logits.sigmoid()
    return output.logits


def run_inference(
    model,
    processor,
    items: list[ScanItem],
    kind: str = "predictions",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
    header: str = "auto",
) -> InferenceResult:
    """Run `model` over every window of every scan; bad scans are skipped with their reason, never fatal. `header`
    says whether TSV/CSV scans start with a header row (`"auto"`, `"yes"`, `"no"`; see `FmriProcessor.__call__`)."""
    from tqdm.auto import tqdm

    model = model.to(device).eval()
    result = InferenceResult()
    pending: list[tuple[np.ndarray, np.ndarray, float]] = []
    owners: list[int] = []  # index into result.items of each pending window
    sums: dict[int, torch.Tensor] = {}

    def flush():
        if not pending:
            return
        with torch.no_grad():
            out = window_outputs(model, _pad_batch(pending, device), kind).float().cpu()
        for owner, row in zip(owners, out):
            sums[owner] = sums[owner] + row if owner in sums else row.clone()
        pending.clear()
        owners.clear()

    for item in tqdm(items, desc=kind, unit="scan", disable=not progress):
        try:
            batch = processor(item.scan(), repetition_time=item.repetition_time, all_windows=True, header=header)
        except Exception as error:  # a scan that cannot be used (bad input, I/O, memory) is skipped; a bug is raised
            reason = expected_failure_line(error)
            if reason is None:
                raise
            result.skipped.append((str(item.path), reason))
            continue
        index = len(result.items)
        result.items.append(item)
        result.num_windows.append(len(batch["fmri_values"]))
        for values, mask, tr in zip(batch["fmri_values"], batch["attention_mask"], batch["repetition_time"]):
            length = int(mask.sum())
            pending.append((values[..., :length], mask[:length], float(tr)))
            owners.append(index)
            if len(pending) >= batch_size:
                flush()
    flush()
    for index, count in enumerate(result.num_windows):
        mean = sums[index] / count
        if kind == "signatures":
            mean = torch.nn.functional.normalize(mean, dim=-1)
        result.outputs.append(mean.numpy())
    return result


def _label_names(config) -> list[str]:
    names = [str(config.id2label[i]) for i in range(config.num_labels)] if config.id2label else []
    if not names or all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return [f"class_{i}" for i in range(config.num_labels)]
    return names


def prediction_columns(config) -> tuple[list[str], str]:
    """Column names of the prediction block and the problem type."""
    problem_type = config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")
    if problem_type == "regression":
        names = [str(config.id2label[i]) for i in range(config.num_labels)] if config.id2label else []
        if not names or all(name == f"LABEL_{i}" for i, name in enumerate(names)):
            names = ["prediction"] if config.num_labels == 1 else [f"prediction_{i}" for i in range(config.num_labels)]
        return names, problem_type
    probabilities = [f"prob_{name}" for name in _label_names(config)]
    if problem_type == "single_label_classification":
        return ["predicted_label", *probabilities], problem_type
    return probabilities, problem_type


def write_predictions(result: InferenceResult, config, output: Path) -> None:
    columns, problem_type = prediction_columns(config)
    labels = _label_names(config)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", delimiter="\t" if output.suffix.lower() == ".tsv" else ",")
    writer.writerow(["subject", "session", "path", "num_windows", *columns])
    for item, windows, values in zip(result.items, result.num_windows, result.outputs):
        numbers = [f"{v:.7g}" for v in values.tolist()]
        if problem_type == "single_label_classification":
            numbers = [labels[int(np.argmax(values))], *numbers]
        writer.writerow([item.subject, item.session, str(item.path), windows, *numbers])
    atomic_write_text(output, buffer.getvalue())


def write_signatures(result: InferenceResult, output: Path, signature_dim: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = np.concatenate(result.outputs).astype(np.float32) if result.outputs else np.zeros(0, np.float32)
    table = pa.table(
        {
            "subject": pa.array([i.subject for i in result.items], pa.string()),
            "session": pa.array([i.session for i in result.items], pa.string()),
            "path": pa.array([str(i.path) for i in result.items], pa.string()),
            "num_windows": pa.array(result.num_windows, pa.int32()),
            "signature": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), signature_dim),
        }
    )
    with atomic_path(output) as temporary:
        pq.write_table(table, temporary)


def skipped_path(output: Path) -> Path:
    return output.with_name(output.name + ".skipped.tsv")


def write_skipped(result: InferenceResult, output: Path) -> Path | None:
    """`<output>.skipped.tsv` (path, reason) when scans were skipped; a stale one from an earlier run is removed."""
    target = skipped_path(output)
    if not result.skipped:
        target.unlink(missing_ok=True)
        return None
    lines = ["path\treason"] + [f"{path}\t{reason}" for path, reason in result.skipped]
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FmriInputError.for_source(None, expected="a CUDA device (--device cuda)", found="no CUDA available")
    return torch.device(device)


def load_for_inference(model_name: str, kind: str, atlas: str | os.PathLike | None = None):
    """The model (checked, see `r2tnet_hf.hub.load_model`) and its processor for `predict` or `signatures`;
    `atlas` (a parcellation file) replaces the one the processor recorded, for volume or dense CIFTI input."""
    from .hub.loading import check_model_folder, load_model, load_processor, resolve_model_folder
    from .models.r2tnet.modeling_r2tnet import R2TNetForPhenotypePrediction, R2TNetModel
    from .processing import FmriProcessor

    folder = resolve_model_folder(model_name)
    config = check_model_folder(folder)
    if config.get("model_type") != "r2tnet":
        raise FmriInputError.for_source(
            model_name, expected="an R2T-Net model (model_type 'r2tnet')", found=f"model_type {config['model_type']!r}"
        )
    expected = R2TNetForPhenotypePrediction if kind == "predictions" else R2TNetModel
    model = load_model(folder, expected_class=expected)
    processor = load_processor(folder) or FmriProcessor.from_model_config(model.config)
    if atlas is not None:
        processor.atlas_file = checked_atlas_path(atlas)
    return model, processor


def checked_atlas_path(atlas: str | os.PathLike) -> str:
    """`--atlas FILE` as an absolute path, refused at once when there is no such file."""
    path = Path(atlas)
    if not path.is_file():
        raise FmriInputError.for_source(
            path, expected="an atlas file (label NIfTI or CIFTI .dlabel.nii) for --atlas", found="no such file"
        )
    return str(path.resolve())


__all__ = [
    "InferenceResult",
    "ScanItem",
    "collect_scans",
    "load_for_inference",
    "prediction_columns",
    "run_inference",
    "scan_identity",
    "write_predictions",
    "write_signatures",
    "write_skipped",
]
