"""Readers: one checking entry point, `read_series`, for every fMRI file the package accepts.

Everything comes back as `FmriSeries` with time on the **last** axis: ROI series `(V, T)`, volumes `(C, H, W, D, T)`.
Tabular and NPY files are time-major on disk (one row per timepoint, as nilearn writes them) and are transposed here,
explicitly. Errors are `FmriInputError`s naming the file, in this order: missing, empty, unknown type, unreadable,
wrong dimensionality, missing TR.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FmriInputError

logger = logging.getLogger(__name__)

TABULAR_SUFFIXES = {".tsv": "\t", ".csv": ","}
CIFTI_SERIES_SUFFIXES = (".dtseries.nii", ".ptseries.nii")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
# Other CIFTI-2 kinds (dconn, dscalar, dlabel, pconn, ...): valid files, but not time series.
CIFTI_OTHER = re.compile(
    r"\.(dconn|dscalar|dlabel|pconn|pscalar|plabel|pdconn|dpconn|pconnseries|pconnscalar|dfan|dfibersamp|dfansamp)\.nii$"
)


@dataclass
class FmriSeries:
    """A scan with its metadata. `data` is float32 with time last."""

    data: np.ndarray
    repetition_time: float | None = None
    roi_labels: list[str] | None = None
    source: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_timepoints(self) -> int:
        return int(self.data.shape[-1])


def parcel_order_hash(labels) -> str:
    """A short, stable hash of the ordered ROI labels: the same parcels in another order give another hash."""
    digest = hashlib.sha256("\n".join(str(label) for label in labels).encode("utf-8"))
    return digest.hexdigest()[:16]


def read_series(path: str | os.PathLike) -> FmriSeries:
    """Read one fMRI file into an `FmriSeries` (time last); the type is chosen by the file name.

    Supported: `.tsv`/`.csv` (rows = timepoints, optional header of ROI names), `.npy` (`(T, V)`),
    CIFTI-2 `.dtseries.nii`/`.ptseries.nii` (TR from the series axis), NIfTI-1/2 `.nii`/`.nii.gz` 4-D volumes (TR from
    the header), returned as `(1, H, W, D, T)`.
    """
    path = Path(path)
    if not path.exists():
        raise FmriInputError.for_source(path, expected="an existing file", found="no such file")
    if path.is_dir():
        raise FmriInputError.for_source(path, expected="a file", found="a directory")
    if path.stat().st_size == 0:
        raise FmriInputError.for_source(path, expected="fMRI data", found="an empty file (0 bytes)")
    name = path.name.lower()
    if path.suffix.lower() in TABULAR_SUFFIXES:
        return read_table(path)
    if name.endswith(".npy"):
        return read_npy(path)
    if name.endswith(CIFTI_SERIES_SUFFIXES):
        return read_cifti_series(path)
    if CIFTI_OTHER.search(name):
        raise FmriInputError.for_source(
            path, expected="a CIFTI-2 time series (.dtseries.nii or .ptseries.nii)", found="another CIFTI-2 kind"
        )
    if name.endswith(NIFTI_SUFFIXES):
        return read_nifti(path)
    raise FmriInputError.for_source(
        path,
        expected="one of .tsv, .csv, .npy, .dtseries.nii, .ptseries.nii, .nii, .nii.gz",
        found=f"an unknown file type {''.join(path.suffixes) or '(no suffix)'!r}",
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.strip().lower() in {"n/a", "nan", ""}
    return True


def read_table(path: Path) -> FmriSeries:
    """TSV/CSV with one row per timepoint and one column per ROI; a first row with any non-number is a header."""
    delimiter = TABULAR_SUFFIXES[path.suffix.lower()]
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        raise FmriInputError.for_source(path, expected="a text table", found="binary content") from None
    cells = first.split(delimiter)
    has_header = not all(_is_number(cell) for cell in cells)
    labels = [cell.strip() for cell in cells] if has_header else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below, by name
            values = np.loadtxt(
                path,
                delimiter=delimiter,
                skiprows=int(has_header),
                dtype=np.float32,
                ndmin=2,
                converters=lambda text: float("nan") if text.strip().lower() in {"n/a", ""} else float(text),
            )
    except ValueError as error:
        raise FmriInputError.for_source(
            path, expected="a numeric table (rows = timepoints, columns = ROIs)", found=f"unparsable content: {error}"
        ) from None
    if values.size == 0:
        raise FmriInputError.for_source(path, expected="at least one timepoint row", found="a header and no data")
    if labels is not None and len(labels) != values.shape[1]:
        raise FmriInputError.for_source(
            path, expected=f"{len(labels)} columns as in the header", found=f"{values.shape[1]} columns of data"
        )
    return FmriSeries(data=np.ascontiguousarray(values.T), roi_labels=labels, source=str(path))


def read_npy(path: Path) -> FmriSeries:
    """NPY array `(T, V)`, time-major like the tables. Pickled object arrays are refused."""
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise FmriInputError.for_source(
            path, expected="a numeric .npy array", found=f"an unreadable file ({error})"
        ) from None
    if values.ndim != 2:
        raise FmriInputError.for_source(
            path, expected="a 2-D array (timepoints, ROIs)", found=f"{values.ndim}-D {tuple(values.shape)}"
        )
    if not np.issubdtype(values.dtype, np.number):
        raise FmriInputError.for_source(path, expected="a numeric array", found=f"dtype {values.dtype}")
    return FmriSeries(data=np.ascontiguousarray(values.T, dtype=np.float32), source=str(path))


def _load_nibabel(path: Path, kind: str):
    import nibabel

    try:
        return nibabel.load(str(path))
    except (gzip.BadGzipFile, EOFError, OSError, ValueError, nibabel.filebasedimages.ImageFileError) as error:
        raise FmriInputError.for_source(
            path, expected=f"a readable {kind} file", found=f"{type(error).__name__}: {error}"
        ) from None


def read_cifti_series(path: Path) -> FmriSeries:
    """CIFTI-2 dense (`dtseries`, grayordinates) or parcellated (`ptseries`) series; TR from the series axis."""
    from nibabel import cifti2

    image = _load_nibabel(path, "CIFTI-2")
    if not isinstance(image, cifti2.Cifti2Image):
        raise FmriInputError.for_source(
            path,
            expected="a CIFTI-2 image",
            found=f"{type(image).__name__} (CIFTI-1 files are not supported by nibabel)",
        )
    try:
        time_axis, brain_axis = image.header.get_axis(0), image.header.get_axis(1)
    except (ValueError, IndexError) as error:
        raise FmriInputError.for_source(path, expected="a 2-axis CIFTI-2 header", found=str(error)) from None
    if not isinstance(time_axis, cifti2.cifti2_axes.SeriesAxis):
        raise FmriInputError.for_source(
            path, expected="a series axis first (dtseries/ptseries)", found=f"{type(time_axis).__name__}"
        )
    if isinstance(brain_axis, cifti2.cifti2_axes.ParcelsAxis):
        labels = [str(name) for name in brain_axis.name]
    elif isinstance(brain_axis, cifti2.cifti2_axes.BrainModelAxis):
        labels = [
            f"{structure}:{vertex}" if vertex >= 0 else f"{structure}:{','.join(map(str, voxel))}"
            for structure, vertex, voxel in zip(brain_axis.name, brain_axis.vertex, brain_axis.voxel)
        ]
    else:
        raise FmriInputError.for_source(
            path, expected="brain models or parcels on the second axis", found=f"{type(brain_axis).__name__}"
        )
    step = float(time_axis.step)
    unit = str(time_axis.unit).upper()
    if unit not in {"SECOND", "SEC"}:
        raise FmriInputError.for_source(path, expected="a series axis in seconds", found=f"unit {unit}")
    try:
        values = np.asarray(image.dataobj, dtype=np.float32)
    except (OSError, ValueError, EOFError) as error:
        raise FmriInputError.for_source(path, expected="readable CIFTI-2 data", found=str(error)) from None
    return FmriSeries(
        data=np.ascontiguousarray(values.T),
        repetition_time=step if step > 0 else None,
        roi_labels=labels,
        source=str(path),
    )


NIFTI_TIME_UNITS_TO_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}
MAX_PLAUSIBLE_TR_SECONDS = 100.0


def read_nifti(path: Path) -> FmriSeries:
    """NIfTI-1/2 4-D volume `(H, W, D, T)` → `(1, H, W, D, T)`; TR from the header's fourth zoom and time unit."""
    image = _load_nibabel(path, "NIfTI")
    if len(image.shape) != 4:
        raise FmriInputError.for_source(
            path, expected="4-D (x, y, z, t)", found=f"{len(image.shape)}-D {tuple(image.shape)}"
        )
    zoom = float(image.header.get_zooms()[3])
    time_unit = image.header.get_xyzt_units()[1]
    scale = NIFTI_TIME_UNITS_TO_SECONDS.get(time_unit, 1.0)  # 'unknown' is taken as seconds, the common default
    if scale == 1.0 and zoom > MAX_PLAUSIBLE_TR_SECONDS:
        # A TR of minutes is not fMRI: such headers (e.g. nibabel's example4d, 2000 'sec') hold milliseconds.
        logger.warning(f"{path}: header TR {zoom:g} {time_unit} is implausible; reading it as {zoom:g} ms")
        scale = 1e-3
    try:
        values = np.asarray(image.dataobj, dtype=np.float32)
    except (OSError, ValueError, EOFError, gzip.BadGzipFile) as error:
        raise FmriInputError.for_source(
            path, expected="readable NIfTI data", found=f"{type(error).__name__}: {error}"
        ) from None
    return FmriSeries(
        data=values[np.newaxis],
        repetition_time=zoom * scale if zoom > 0 else None,
        source=str(path),
        extra={"affine": np.asarray(image.affine)},
    )
