"""Manifests: one row per scan, the way every user's data reaches the package.

Columns: `subject`, `session`, `modality` (`rest` | `task`), `task`, `path` (relative paths are relative to the
manifest's folder), `repetition_time` (seconds) when the file lacks it, and `num_frames` (frames in the scan, which
`r2tnet manifest` writes and `r2tnet convert` checks each scan against). Every other column is a phenotype.
Manifests are CSV or TSV in UTF-8 (a byte-order mark is dropped), chosen by the file name; they are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FmriInputError
from ..utils import atomic_write_text
from .io import checked_repetition_time, count_frames, read_text

REQUIRED_COLUMNS = ("subject", "session", "modality", "task", "path")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "repetition_time", "num_frames")  # everything else is a phenotype
MODALITIES = ("rest", "task")
MISSING = {"", "n/a", "na", "nan"}
REST_TASKS = {"rest", "resting", "restingstate"}


@dataclass
class ScanRecord:
    """One manifest row. `index` is its 0-based position in the manifest."""

    subject: str
    session: str
    modality: str
    task: str
    path: str
    repetition_time: float | None = None
    phenotypes: dict[str, str] = field(default_factory=dict)
    index: int = 0
    num_frames: int | None = None


@dataclass
class Manifest:
    records: list[ScanRecord]
    phenotype_columns: list[str]
    source: Path | None = None

    def resolve(self, record: ScanRecord) -> Path:
        """The record's file, relative paths taken from the manifest's folder."""
        path = Path(record.path)
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path

    @property
    def subjects(self) -> list[str]:
        return sorted({record.subject for record in self.records})


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read and check a manifest; problems raise `FmriInputError` naming the file and the row."""
    path = Path(path)
    if not path.is_file():
        raise FmriInputError.for_source(path, expected="a manifest file", found="no such file")
    if path.suffix.lower() not in (".tsv", ".csv"):
        raise FmriInputError.for_source(path, expected="a .tsv or .csv manifest", found=f"{path.suffix or 'no suffix'}")
    text = read_text(path, "a manifest")
    try:
        return _parse_manifest(path, text)
    except csv.Error as error:
        raise FmriInputError.for_source(
            path, expected="a CSV/TSV manifest", found=f"unreadable text ({error})"
        ) from None


def _parse_manifest(path: Path, text: str) -> Manifest:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(path))
    columns = [column.strip() for column in (reader.fieldnames or [])]
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise FmriInputError.for_source(
            path, expected=f"columns {', '.join(REQUIRED_COLUMNS)}", found=f"no {', '.join(missing)} column"
        )
    phenotype_columns = [c for c in columns if c not in KNOWN_COLUMNS]
    records, seen = [], {}
    for index, raw in enumerate(reader):
        row = {key.strip(): (value or "").strip() for key, value in raw.items() if key is not None}
        where = f"{path} row {index + 2}"
        for column in ("subject", "session", "modality", "path"):
            if not row.get(column):
                raise FmriInputError.for_source(where, expected=f"a {column}", found="an empty cell")
        if row["modality"] not in MODALITIES:
            raise FmriInputError.for_source(where, expected="modality rest or task", found=repr(row["modality"]))
        repetition_time = None
        if row.get("repetition_time", "").lower() not in MISSING:
            repetition_time = checked_repetition_time(row["repetition_time"], where, "repetition_time")
        num_frames = None
        if row.get("num_frames", "").lower() not in MISSING:
            text = row["num_frames"]
            if not text.isdigit() or int(text) < 1:
                raise FmriInputError.for_source(
                    where, expected="num_frames, a whole number of frames >= 1", found=repr(text)
                )
            num_frames = int(text)
        if row["path"] in seen:
            raise FmriInputError.for_source(
                where,
                expected="each path once",
                found=f"{row['path']} again (first on row {seen[row['path']] + 2})",
            )
        seen[row["path"]] = index
        phenotypes = {column: row.get(column, "") for column in phenotype_columns}
        records.append(
            ScanRecord(
                row["subject"],
                row["session"],
                row["modality"],
                row.get("task", ""),
                row["path"],
                repetition_time,
                phenotypes,
                index,
                num_frames,
            )
        )
    if not records:
        raise FmriInputError.for_source(path, expected="at least one scan row", found="none")
    return Manifest(records, phenotype_columns, path)


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> None:
    """Write a manifest (TSV or CSV by the name) atomically. Paths are written as they are in the records."""
    path = Path(path)
    frames = any(record.num_frames is not None for record in manifest.records)
    columns = [*REQUIRED_COLUMNS, "repetition_time", *(["num_frames"] if frames else []), *manifest.phenotype_columns]
    delimiter = _delimiter(path)
    lines = [delimiter.join(columns)]
    for record in manifest.records:
        cells = [
            record.subject,
            record.session,
            record.modality,
            record.task,
            record.path,
            "" if record.repetition_time is None else f"{record.repetition_time:g}",
        ]
        if frames:
            cells.append("" if record.num_frames is None else str(record.num_frames))
        cells += [record.phenotypes.get(column, "") for column in manifest.phenotype_columns]
        if any(delimiter in cell or "\n" in cell for cell in cells):
            raise FmriInputError.for_source(path, expected=f"cells without {delimiter!r}", found=f"{cells}")
        lines.append(delimiter.join(cells))
    atomic_write_text(path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- BIDS / fMRIPrep
BIDS_ENTITY = re.compile(r"(?:^|_)(sub|ses|task|run)-([a-zA-Z0-9]+)")
BIDS_FUNC_PATTERNS = ("*_bold.nii.gz", "*_bold.nii", "*.dtseries.nii")
# ROI series: BIDS derivatives (`*_timeseries.tsv`, as nilearn/xcp_d/`r2tnet synth` write them) and parcellated CIFTI.
BIDS_ROI_PATTERNS = ("*_timeseries.tsv", "*_timeseries.csv", "*_timeseries.npy", "*.ptseries.nii")
KINDS = ("auto", "volume", "roi")
_IMAGE_SUFFIX = re.compile(r"(\.dtseries\.nii|\.ptseries\.nii|\.nii\.gz|\.nii|\.tsv|\.csv|\.npy)$")


def _bids_repetition_time(root: Path, image: Path, task: str) -> float | None:
    """`RepetitionTime` from the sidecar JSON beside the file, else from the top-level `task-<task>_bold.json`."""
    stem = _IMAGE_SUFFIX.sub("", image.name)
    candidates = [
        image.with_name(stem + ".json"),
        image.with_name(stem + ".dtseries.json"),
        image.with_name(stem + ".ptseries.json"),
        root / f"task-{task}_bold.json",
    ]
    for candidate in candidates:
        if candidate.is_file():
            try:
                sidecar = json.loads(read_text(candidate, "a JSON sidecar"))
            except json.JSONDecodeError as error:
                raise FmriInputError.for_source(
                    candidate, expected="a JSON sidecar", found=f"invalid JSON ({error})"
                ) from None
            value = sidecar.get("RepetitionTime") if isinstance(sidecar, dict) else None
            if value is not None:
                return checked_repetition_time(value, candidate, "RepetitionTime")
    return None


def _find_bids_files(root: Path, kind: str, include: str | None) -> list[Path]:
    """Scans under `sub-*/`: volumes (`func/*_bold.nii[.gz]`, `*.dtseries.nii`) and/or ROI series; with
    `kind="auto"` whichever of the two the folder has, refusing to guess when it has both."""

    def find(patterns, under):
        found = {p for pattern in patterns for p in root.glob(f"sub-*/**/{under}{pattern}") if p.is_file()}
        return sorted(p for p in found if include is None or p.match(include))

    volumes = find(BIDS_FUNC_PATTERNS, "func/") if kind in ("auto", "volume") else []
    series = find(BIDS_ROI_PATTERNS, "") if kind in ("auto", "roi") else []
    if kind == "auto" and volumes and series:
        raise FmriInputError.for_source(
            root,
            expected="one kind of scan file",
            found=f"{len(volumes)} volumes (e.g. {volumes[0].name}) and {len(series)} ROI series "
            f"(e.g. {series[0].name})",
            hint="pass --kind volume or --kind roi",
        )
    files = volumes or series
    if not files:
        patterns = {"volume": BIDS_FUNC_PATTERNS, "roi": BIDS_ROI_PATTERNS}.get(
            kind, BIDS_FUNC_PATTERNS + BIDS_ROI_PATTERNS
        )
        raise FmriInputError.for_source(
            root,
            expected=f"sub-*/[ses-*/]func/ files matching {', '.join(patterns)}"
            + (f" and {include}" if include else ""),
            found="none",
        )
    return files


def _frames_or_none(path: Path, header: str) -> int | None:
    """The scan's frame count for the manifest's `num_frames`; `None` (a blank cell) when the file cannot be read
    cheaply, which `convert` then reports for that scan alone."""
    try:
        return count_frames(path, header)
    except (FmriInputError, OSError):
        return None


def manifest_from_bids(
    root: str | os.PathLike, kind: str = "auto", include: str | None = None, header: str = "auto"
) -> Manifest:
    """Discover the scans of a BIDS, fMRIPrep or derivatives folder.

    `kind`: `"volume"` finds `sub-*/[ses-*/]func/*_bold.nii[.gz]` and `*.dtseries.nii`; `"roi"` finds ROI series
    anywhere under `sub-*/`: `*_timeseries.tsv`/`.csv`/`.npy` (BIDS derivatives, and what `r2tnet synth` writes) and
    `*.ptseries.nii`; `"auto"` takes whichever the folder has (both: refused, naming an example of each). `include` is
    a glob on the file name (e.g. `*atlas-Schaefer400*`) to pick one of several derivatives per run; two files for the
    same subject, session, run and task are refused, naming both. `task-rest` (or `resting`, `restingstate`) is rest,
    every other task is task. The session is the `ses-` label (`1` without one), with `_run-<n>` appended when there
    are runs. TR comes from the JSON sidecars when present (else from the header, or `--repetition-time`).
    `participants.tsv` columns become phenotypes. `num_frames` is read from each file's header (NIfTI, CIFTI, NPY) or
    by counting data rows (TSV/CSV, with `header` as in `r2tnet_hf.data.io.table_layout`); blank when unreadable.
    """
    root = Path(root)
    if not root.is_dir():
        raise FmriInputError.for_source(root, expected="a BIDS folder", found="no such folder")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    images = _find_bids_files(root, kind, include)
    participants = _read_participants(root / "participants.tsv")
    phenotype_columns = sorted({column for values in participants.values() for column in values})
    records, seen = [], {}
    for index, image in enumerate(images):
        entities = dict(BIDS_ENTITY.findall(image.name))
        if "sub" not in entities or "task" not in entities:
            raise FmriInputError.for_source(image, expected="sub- and task- entities in the name", found=image.name)
        subject, task = f"sub-{entities['sub']}", entities["task"]
        session = f"ses-{entities['ses']}" if "ses" in entities else "1"
        if "run" in entities:
            session += f"_run-{entities['run']}"
        key = (subject, session, task)
        if key in seen:
            raise FmriInputError.for_source(
                image,
                expected=f"one file for {subject} {session} task-{task}",
                found=f"also {seen[key].relative_to(root)}",
                hint="pick one with --include, e.g. --include '*atlas-<name>*'",
            )
        seen[key] = image
        records.append(
            ScanRecord(
                subject=subject,
                session=session,
                modality="rest" if task.lower() in REST_TASKS else "task",
                task=task,
                path=image.relative_to(root).as_posix(),
                repetition_time=_bids_repetition_time(root, image, task),
                phenotypes=dict(participants.get(subject, {})),
                index=index,
                num_frames=_frames_or_none(image, header),
            )
        )
    return Manifest(records, phenotype_columns, root / "manifest.tsv")


def _read_participants(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with io.StringIO(read_text(path, "a participants table"), newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if "participant_id" not in (reader.fieldnames or []):
            raise FmriInputError.for_source(path, expected="a participant_id column", found=f"{reader.fieldnames}")
        table = {}
        for row in reader:
            subject = row.pop("participant_id").strip()
            table[subject] = {
                key: ("" if (value or "").strip().lower() in MISSING else value.strip()) for key, value in row.items()
            }
        return table


def manifest_from_frames(
    root: str | os.PathLike, repetition_time: float | None = None, modality: str = "rest", task: str = "rest"
) -> Manifest:
    """The R2T-Net layout `img/<subject>/frame_<t>.pt`: one row per subject folder (`root` is `img` or its parent)."""
    root = Path(root)
    folder = root / "img" if (root / "img").is_dir() else root
    subjects = (
        sorted(p for p in folder.iterdir() if p.is_dir() and any(p.glob("frame_*.pt"))) if folder.is_dir() else []
    )
    if not subjects:
        raise FmriInputError.for_source(root, expected="img/<subject>/frame_<t>.pt folders", found="none")
    if modality not in MODALITIES:
        raise ValueError(f"modality must be rest or task, got {modality!r}")
    repetition_time = checked_repetition_time(repetition_time, "--repetition-time", "repetition_time")
    records = [
        ScanRecord(
            p.name,
            "1",
            modality,
            task,
            p.relative_to(root).as_posix(),
            repetition_time,
            {},
            index,
            _frames_or_none(p, "auto"),
        )
        for index, p in enumerate(subjects)
    ]
    return Manifest(records, [], root / "manifest.tsv")
