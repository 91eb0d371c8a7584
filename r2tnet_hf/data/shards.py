"""`r2tnet convert`: a manifest of fMRI files → Parquet shards that `datasets` reads, a dataset card and `manifest.json`.

Rows. ROI series: one row per scan. Volumes: one row per window of `window` frames (the last window keeps its true,
shorter length; nothing is dropped). Each row holds the array as raw bytes (`data`, C order, time last) with its
`shape` and `dtype`, which streams about 2× faster than `Array2D` features, plus the scan's metadata and phenotypes.
Arrays are stored after `FmriProcessor.prepare`: validated, parcellated if an atlas is given, resampled if a target TR
is given, z-scored per ROI (voxel) over the whole scan.

Robustness. Shards are written to a temporary file and renamed; a journal in `OUT/.convert-state/` records every
finished shard with its sha256, so a run killed half-way resumes where it stopped and ends with the same shards as an
uninterrupted run. Inputs are fingerprinted (manifest bytes, options, each file's size and mtime): a rerun with the
same inputs is a no-op, with changed inputs a rebuild. Every scan becomes rows or, with `skip_bad`, is listed as
skipped with its reason; without `skip_bad` the first bad scan stops the conversion with its `FmriInputError` and
nothing of the run is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FmriInputError, expected_failure_line
from ..processing import FmriProcessor
from ..utils import atomic_path, atomic_write_text
from .io import Atlas, parcellate, read_atlas, read_series
from .manifest import Manifest, ScanRecord, read_manifest

FORMAT = "r2tnet-shards/1"
STATE_DIR = ".convert-state"
SHARD_PATTERN = "shard-{:05d}.parquet"
# Rows per Parquet row group are chosen so that a group holds about this many bytes of array data: a streamed batch
# and a cached group for random access stay small whether a row is a 94-ROI series or a 96³ volume window.
ROW_GROUP_BYTES = 32 << 20
METADATA_COLUMNS = (
    "scan_index",
    "subject",
    "session",
    "modality",
    "task",
    "source",
    "repetition_time",
    "num_frames",
    "window_start",
)


@dataclass
class ConvertOptions:
    atlas: str | None = None
    atlas_name: str | None = (
        None  # the parcellation's name when the series are parcellated already (default: file stem)
    )
    dtype: str = "float32"
    shard_size_mb: float = 256.0
    window: int | None = None
    target_repetition_time: float | None = None
    min_length: int = 16
    skip_bad: bool = False
    header: str = "auto"  # whether TSV/CSV scans start with a header row: "auto", "yes" or "no" (data.io.table_layout)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ConvertResult:
    out_dir: Path
    shards: list[dict]
    rows: int
    scans: int
    skipped: list[dict] = field(default_factory=list)
    up_to_date: bool = False


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _input_fingerprint(manifest: Manifest, options: ConvertOptions) -> str:
    digest = hashlib.sha256()
    digest.update(Path(manifest.source).read_bytes())
    digest.update(json.dumps(options.to_dict(), sort_keys=True).encode())
    if options.atlas:
        stat = os.stat(options.atlas)
        digest.update(f"{options.atlas}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for record in manifest.records:
        path = manifest.resolve(record)
        if path.is_dir():
            stats = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.glob("frame_*.pt"))
            digest.update(json.dumps(stats).encode())
        elif path.exists():
            stat = path.stat()
            digest.update(f"{record.path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        else:
            digest.update(f"{record.path}:missing".encode())
    return digest.hexdigest()


def _phenotype_types(manifest: Manifest) -> dict[str, str]:
    """`float64` for columns whose every non-missing value is a number, else `string`."""
    types = {}
    for column in manifest.phenotype_columns:
        values = [r.phenotypes.get(column, "") for r in manifest.records]
        present = [v for v in values if v.strip().lower() not in ("", "n/a", "na", "nan")]
        try:
            [float(v) for v in present]
            types[column] = "float64"
        except ValueError:
            types[column] = "string"
    return types


def _schema(phenotype_types: dict[str, str]):
    import pyarrow as pa

    fields = [
        pa.field("scan_index", pa.int64()),
        pa.field("subject", pa.string()),
        pa.field("session", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("task", pa.string()),
        pa.field("source", pa.string()),
        pa.field("repetition_time", pa.float32()),
        pa.field("num_frames", pa.int32()),
        pa.field("window_start", pa.int32()),
        pa.field("shape", pa.list_(pa.int32())),
        pa.field("dtype", pa.string()),
        pa.field("data", pa.binary()),
    ]
    fields += [
        pa.field(name, pa.float64() if kind == "float64" else pa.string()) for name, kind in phenotype_types.items()
    ]
    return pa.schema(fields)


class ShardWriter:
    """Buffers rows and writes a Parquet shard whenever the buffer reaches the size limit (at scan boundaries)."""

    def __init__(self, out_dir: Path, schema, shard_bytes: int, shards: list[dict]):
        self.out_dir, self.schema, self.shard_bytes = out_dir, schema, shard_bytes
        self.shards = shards
        self.rows: list[dict] = []
        self.buffered = 0

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.buffered += len(row["data"])

    @property
    def full(self) -> bool:
        return self.buffered >= self.shard_bytes

    def flush(self) -> dict | None:
        if not self.rows:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        name = SHARD_PATTERN.format(len(self.shards))
        row_group_size = max(1, int(ROW_GROUP_BYTES * len(self.rows) // max(1, self.buffered)))
        # The array column is stored plain and uncompressed (fMRI floats barely compress, and a dictionary page is
        # wasted on unique values), so a memory-mapped read of it is a view rather than a decode.
        small_columns = [column for column in self.schema.names if column != "data"]
        with atomic_path(self.out_dir / name) as temporary:
            pq.write_table(
                table, temporary, row_group_size=row_group_size, compression="none", use_dictionary=small_columns
            )
            digest = sha256_file(temporary)
        entry = {"file": name, "rows": len(self.rows), "sha256": digest, "bytes": (self.out_dir / name).stat().st_size}
        self.shards.append(entry)
        self.rows, self.buffered = [], 0
        return entry


def _scan_rows(series, record: ScanRecord, phenotype_types: dict[str, str], options: ConvertOptions) -> list[dict]:
    data = series.data.astype(options.dtype)
    frames = data.shape[-1]
    if series.data.ndim == 2 or options.window is None:
        starts = [0]
        length = frames
    else:
        length = options.window
        starts = list(range(0, frames, length))
    phenotypes = {}
    for name, kind in phenotype_types.items():
        value = record.phenotypes.get(name, "")
        missing = value.strip().lower() in ("", "n/a", "na", "nan")
        phenotypes[name] = (
            (float("nan") if missing else float(value)) if kind == "float64" else (None if missing else value)
        )
    rows = []
    for start in starts:
        window = np.ascontiguousarray(data[..., start : start + length])
        rows.append(
            {
                "scan_index": record.index,
                "subject": record.subject,
                "session": record.session,
                "modality": record.modality,
                "task": record.task,
                "source": record.path,
                "repetition_time": float(series.repetition_time),
                "num_frames": int(window.shape[-1]),
                "window_start": int(start),
                "shape": list(window.shape),
                "dtype": options.dtype,
                "data": window.tobytes(),
                **phenotypes,
            }
        )
    return rows


def _build_processor(series, atlas: Atlas | None, options: ConvertOptions) -> FmriProcessor:
    """The dataset's processor, from its first good scan: every other scan must match it."""
    common = dict(
        target_repetition_time=options.target_repetition_time,
        min_length=options.min_length,
        atlas=options.atlas_name or (atlas.name if atlas else None),
        atlas_file=str(Path(atlas.source).resolve()) if atlas else None,
    )
    if series.data.ndim == 2:
        return FmriProcessor(input_type="roi", num_rois=series.data.shape[0], roi_labels=series.roi_labels, **common)
    return FmriProcessor(input_type="volume", volume_shape=list(series.data.shape[:4]), **common)


def _prepare(
    manifest: Manifest,
    record: ScanRecord,
    atlas: Atlas | None,
    processor: FmriProcessor | None,
    options: ConvertOptions,
):
    path = manifest.resolve(record)
    series = read_series(path, header=options.header)
    if record.num_frames is not None and series.num_timepoints != record.num_frames:
        raise FmriInputError.for_source(
            path,
            expected=f"{record.num_frames} frames (the manifest's num_frames)",
            found=f"{series.num_timepoints} frames",
            hint="a header row read as data, or the reverse? pass --header yes or --header no; else correct "
            "num_frames or the file",
        )
    if atlas is not None:
        series = parcellate(series, atlas)
    if processor is None:
        processor = _build_processor(series, atlas, options)
    return processor.prepare(series, record.repetition_time), processor


def _write_journal(state_dir: Path, journal: dict) -> None:
    atomic_write_text(state_dir / "journal.json", json.dumps(journal, indent=1))


def convert(
    manifest_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: ConvertOptions | None = None,
    progress: bool = True,
) -> ConvertResult:
    """Convert the scans of a manifest into shards in `out_dir`; see the module docstring."""
    from tqdm.auto import tqdm

    options = options or ConvertOptions()
    if options.dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {options.dtype!r}")
    manifest = read_manifest(manifest_path)
    out_dir = Path(out_dir)
    atlas = read_atlas(options.atlas) if options.atlas else None
    fingerprint = _input_fingerprint(manifest, options)
    state_dir = out_dir / STATE_DIR
    previous = _previous_result(out_dir, fingerprint)
    if previous is not None:
        return previous
    journal = _resumed_journal(out_dir, fingerprint)

    phenotype_types = _phenotype_types(manifest)
    processor = FmriProcessor.from_dict(journal["processor"]) if journal["processor"] else None
    writer = ShardWriter(out_dir, _schema(phenotype_types), int(options.shard_size_mb * 2**20), journal["shards"])
    skipped = list(journal["skipped"])
    pending_skipped: list[dict] = []
    records = manifest.records
    try:
        bar = tqdm(
            records[journal["next_scan"] :],
            desc="converting",
            unit="scan",
            disable=not progress,
            initial=journal["next_scan"],
            total=len(records),
        )
        for record in bar:
            try:
                series, processor = _prepare(manifest, record, atlas, processor, options)
            except Exception as error:  # with --skip-bad, any expected failure of one scan skips it; a bug is raised
                reason = expected_failure_line(error)
                if reason is None or not options.skip_bad:
                    raise
                pending_skipped.append(_skipped_entry(record, reason))
                continue
            for row in _scan_rows(series, record, phenotype_types, options):
                writer.add(row)
            if writer.full:
                _commit_shard(writer, journal, state_dir, record.index + 1, skipped, pending_skipped, processor)
        _commit_shard(writer, journal, state_dir, len(records), skipped, pending_skipped, processor)
    except Exception as error:  # an expected failure leaves no shard behind; a bug keeps the journal to inspect
        if expected_failure_line(error) is not None:
            _remove_outputs(out_dir)
        raise
    if processor is None:
        _remove_outputs(out_dir)
        raise FmriInputError.for_source(manifest.source, expected="at least one readable scan", found="none")

    result = ConvertResult(out_dir, journal["shards"], journal["rows"], len(records) - len(skipped), skipped)
    _write_dataset(result, fingerprint, manifest, processor, options, phenotype_types)
    shutil.rmtree(state_dir, ignore_errors=True)
    return result


def _previous_result(out_dir: Path, fingerprint: str) -> ConvertResult | None:
    """The result of a finished convert in `out_dir` of the same inputs and options (nothing to do), else `None`.

    Refuses a folder that holds other files than a convert output; removes the temporaries of an interrupted run.
    """
    final, state_dir = out_dir / "manifest.json", out_dir / STATE_DIR
    if out_dir.exists() and any(out_dir.iterdir()) and not final.exists() and not state_dir.exists():
        raise FmriInputError.for_source(
            out_dir, expected="an empty folder or a previous convert output", found="other files"
        )
    _remove_orphaned_temporaries(out_dir)
    if final.exists():
        done = json.loads(final.read_text())
        if done.get("fingerprint") == fingerprint:
            return ConvertResult(out_dir, done["shards"], done["rows"], done["scans"], done["skipped"], up_to_date=True)
    return None


def _resumed_journal(out_dir: Path, fingerprint: str) -> dict:
    """The journal of an interrupted convert of the same inputs whose shards are intact; else a new one, after the
    previous outputs are removed. Either way the state folder exists afterwards."""
    path = out_dir / STATE_DIR / "journal.json"
    journal = json.loads(path.read_text()) if path.exists() else None
    if journal is not None:
        intact = journal.get("fingerprint") == fingerprint and all(
            (out_dir / s["file"]).is_file() and sha256_file(out_dir / s["file"]) == s["sha256"]
            for s in journal["shards"]
        )
        journal = journal if intact else None
    if journal is None:
        _remove_outputs(out_dir)
        journal = {
            "fingerprint": fingerprint,
            "next_scan": 0,
            "shards": [],
            "skipped": [],
            "rows": 0,
            "processor": None,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    return journal


def _skipped_entry(record: ScanRecord, reason: str) -> dict:
    """How `manifest.json` lists a scan that `--skip-bad` left out."""
    return {
        "scan_index": record.index,
        "subject": record.subject,
        "session": record.session,
        "path": record.path,
        "reason": reason,
    }


def _write_dataset(result: ConvertResult, fingerprint: str, manifest: Manifest, processor, options, phenotype_types):
    """Write what makes the shards a dataset: the processor, the dataset card and `manifest.json` (last: its presence
    says the convert finished)."""
    processor.save_pretrained(result.out_dir)
    card = dataset_card(result, manifest, processor, options, phenotype_types)
    atomic_write_text(result.out_dir / "README.md", card)
    summary = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "shards": result.shards,
        "rows": result.rows,
        "scans": result.scans,
        "skipped": result.skipped,
        "subjects": len({r.subject for r in manifest.records}),
        "phenotypes": phenotype_types,
        "options": options.to_dict(),
        "source_manifest": str(manifest.source),
    }
    atomic_write_text(result.out_dir / "manifest.json", json.dumps(summary, indent=2) + "\n")


def _commit_shard(writer, journal, state_dir, next_scan, skipped, pending_skipped, processor) -> None:
    """Write the buffered rows as a shard, then record it (and the scans skipped so far) in the journal."""
    entry = writer.flush()
    skipped.extend(pending_skipped)
    pending_skipped.clear()
    if entry is not None:
        journal["rows"] += entry["rows"]
    journal.update(
        next_scan=next_scan, skipped=list(skipped), processor=processor.to_dict() if processor is not None else None
    )
    _write_journal(state_dir, journal)


# What `atomic_path` leaves behind when a run is killed mid-write: `.<name>.<random>.tmp` beside each output.
ORPHAN_PATTERNS = (
    ".shard-*.parquet.*.tmp",
    ".manifest.json.*.tmp",
    ".README.md.*.tmp",
    ".preprocessor_config.json.*.tmp",
)


def _remove_orphaned_temporaries(out_dir: Path) -> None:
    """Remove the temporary files of a killed run (never a finished output: those have no leading dot)."""
    for folder in (out_dir, out_dir / STATE_DIR):
        if folder.is_dir():
            for pattern in (*ORPHAN_PATTERNS, ".journal.json.*.tmp"):
                for path in folder.glob(pattern):
                    path.unlink(missing_ok=True)


def _remove_outputs(out_dir: Path) -> None:
    """Remove what `convert` writes (and nothing else) from `out_dir`."""
    if not out_dir.exists():
        return
    _remove_orphaned_temporaries(out_dir)
    for path in out_dir.glob("shard-*.parquet"):
        path.unlink()
    for name in ("manifest.json", "README.md", "preprocessor_config.json"):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / STATE_DIR, ignore_errors=True)
    shutil.rmtree(out_dir / "arrow", ignore_errors=True)  # FmriStream's memory-mapped copy of the shards


def dataset_card(
    result: ConvertResult,
    manifest: Manifest,
    processor: FmriProcessor,
    options: ConvertOptions,
    phenotype_types: dict[str, str],
) -> str:
    """README.md for the shard folder: YAML header that `datasets` reads, features and counts."""
    kept = [r for r in manifest.records if r.index not in {s["scan_index"] for s in result.skipped}]
    by_modality = {m: sum(r.modality == m for r in kept) for m in ("rest", "task")}
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        '    path: "shard-*.parquet"',
        "tags:",
        "- fmri",
        "- neuroscience",
        "- r2tnet-hf",
        "---",
        "",
        "# fMRI shards",
        "",
        f"Written by `r2tnet convert` from `{Path(manifest.source).name}`.",
        "",
        "| | count |",
        "|---|---|",
        f"| scans converted | {result.scans} ({by_modality['rest']} rest, {by_modality['task']} task) |",
        f"| scans skipped | {len(result.skipped)} |",
        f"| subjects | {len({r.subject for r in kept})} |",
        f"| rows | {result.rows} |",
        f"| shards | {len(result.shards)} |",
        "",
        "## Features",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
        "| scan_index | int64 | row of the scan in the source manifest |",
        "| subject, session, modality, task, source | string | from the manifest |",
        "| repetition_time | float32 | seconds per frame (after resampling) |",
        "| num_frames, window_start | int32 | frames in this row, and where they start in the scan |",
        "| shape, dtype, data | list<int32>, string, binary | the array, raw bytes in C order, time last |",
    ]
    lines += [f"| {name} | {kind} | phenotype |" for name, kind in phenotype_types.items()]
    lines += [
        "",
        "## Preprocessing",
        "",
        f"- layout: {processor.input_type}"
        + (f", {processor.num_rois} ROIs" if processor.input_type == "roi" else f", volume {processor.volume_shape}"),
        f"- atlas: {processor.atlas or 'none'}; parcel-order hash: {processor.parcel_order_hash or 'none'}",
        f"- normalisation: {processor.normalization} per ROI over the whole scan; stored as {options.dtype}",
        f"- target TR: {processor.target_repetition_time or 'none (native TR kept)'}",
        f"- window: {options.window or 'none (one row per scan)'}",
    ]
    if result.skipped:
        lines += ["", "## Skipped scans", ""] + [f"- `{s['path']}`: {s['reason']}" for s in result.skipped]
    return "\n".join(lines) + "\n"
