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
    the header), returned as `(1, H, W, D, T)`, and folders of `frame_<t>.pt` files (the R2T-Net layout; no TR).
    """
    path = Path(path)
    if not path.exists():
        raise FmriInputError.for_source(path, expected="an existing file", found="no such file")
    if path.is_dir():
        if any(path.glob("frame_*.pt")):
            return read_frames_dir(path)
        raise FmriInputError.for_source(path, expected="a file, or a folder of frame_<t>.pt files", found="a directory")
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
        labels = _brain_model_labels(brain_axis)
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


FRAME_NAME = re.compile(r"^frame_(\d+)\.pt$")


def read_frames_dir(folder: Path) -> FmriSeries:
    """The R2T-Net layout: `frame_<t>.pt` files, each a `(C, H, W, D)` tensor, stacked to `(C, H, W, D, T)`.

    Files are read with `torch.load(weights_only=True)`: tensors only, never arbitrary pickled objects. Frame numbers
    must run without gaps. The layout carries no TR: the manifest supplies it.
    """
    import torch

    frames = {}
    for path in folder.glob("frame_*.pt"):
        match = FRAME_NAME.match(path.name)
        if match:
            frames[int(match.group(1))] = path
    if not frames:
        raise FmriInputError.for_source(folder, expected="frame_<t>.pt files", found="none")
    order = sorted(frames)
    missing = sorted(set(range(order[0], order[-1] + 1)) - set(order))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise FmriInputError.for_source(folder, expected="consecutive frame numbers", found=f"missing frame(s) {shown}")
    volumes, shape = [], None
    for index in order:
        path = frames[index]
        if path.stat().st_size == 0:
            raise FmriInputError.for_source(path, expected="a (C, H, W, D) tensor", found="an empty file (0 bytes)")
        try:
            frame = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types on corrupt or pickled content
            reason = " ".join(str(error).split())[:200]
            raise FmriInputError.for_source(path, expected="a tensor saved with torch.save", found=reason) from None
        if not torch.is_tensor(frame) or frame.ndim != 4:
            found = f"{frame.ndim}-D {tuple(frame.shape)}" if torch.is_tensor(frame) else type(frame).__name__
            raise FmriInputError.for_source(path, expected="a 4-D (C, H, W, D) tensor", found=found)
        if shape is not None and tuple(frame.shape) != shape:
            raise FmriInputError.for_source(
                path, expected=f"shape {shape} like frame_{order[0]}.pt", found=f"{tuple(frame.shape)}"
            )
        shape = tuple(frame.shape)
        volumes.append(frame.float().numpy())
    return FmriSeries(data=np.stack(volumes, axis=-1), source=str(folder))


@dataclass
class Atlas:
    """A parcellation: integer `keys` per grayordinate (CIFTI) or voxel (NIfTI), and the ordered parcel `labels`.

    `parcel_keys[i]` is the key of parcel `labels[i]`; parcels are ordered by key, background (key 0) left out.
    `grayordinates` holds the brain-model labels of a CIFTI atlas, to check a dense series against.
    """

    name: str
    keys: np.ndarray
    parcel_keys: list[int]
    labels: list[str]
    source: str
    grayordinates: list[str] | None = None
    affine: np.ndarray | None = None


def _brain_model_labels(axis) -> list[str]:
    return [
        f"{structure}:{vertex}" if vertex >= 0 else f"{structure}:{','.join(map(str, voxel))}"
        for structure, vertex, voxel in zip(axis.name, axis.vertex, axis.voxel)
    ]


def read_atlas(path: str | os.PathLike) -> Atlas:
    """A CIFTI-2 `.dlabel.nii` (grayordinates) or a label NIfTI `.nii`/`.nii.gz` (volumes).

    Label names come from the CIFTI label table; for a label NIfTI from a BIDS-style `.tsv` beside it (same name,
    columns `index` and `name`) when there is one, else `label_<key>`.
    """
    path = Path(path)
    if not path.is_file():
        raise FmriInputError.for_source(path, expected="an atlas file", found="no such file")
    if path.stat().st_size == 0:
        raise FmriInputError.for_source(path, expected="an atlas file", found="an empty file (0 bytes)")
    name = path.name.lower()
    if name.endswith(".dlabel.nii"):
        from nibabel import cifti2

        image = _load_nibabel(path, "CIFTI-2 dlabel")
        if not isinstance(image, cifti2.Cifti2Image):
            raise FmriInputError.for_source(path, expected="a CIFTI-2 dlabel image", found=type(image).__name__)
        label_axis, brain_axis = image.header.get_axis(0), image.header.get_axis(1)
        if not isinstance(label_axis, cifti2.cifti2_axes.LabelAxis) or not isinstance(
            brain_axis, cifti2.cifti2_axes.BrainModelAxis
        ):
            raise FmriInputError.for_source(
                path,
                expected="labels × brain models",
                found=f"{type(label_axis).__name__} × {type(brain_axis).__name__}",
            )
        keys = np.asarray(image.dataobj)[0].astype(np.int64)
        table = label_axis.label[0]
        parcel_keys = sorted(int(k) for k in np.unique(keys) if k != 0)
        labels = [str(table[k][0]) if k in table else f"label_{k}" for k in parcel_keys]
        stem = path.name[: -len(".dlabel.nii")]
        return Atlas(stem, keys, parcel_keys, labels, str(path), grayordinates=_brain_model_labels(brain_axis))
    if name.endswith(NIFTI_SUFFIXES):
        image = _load_nibabel(path, "label NIfTI")
        data = np.asarray(image.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise FmriInputError.for_source(path, expected="a 3-D label volume", found=f"{data.ndim}-D {data.shape}")
        if not np.allclose(data, np.round(data)):
            raise FmriInputError.for_source(path, expected="integer labels", found="non-integer values")
        keys = np.round(data).astype(np.int64)
        parcel_keys = sorted(int(k) for k in np.unique(keys) if k != 0)
        stem = re.sub(r"\.nii(\.gz)?$", "", path.name, flags=re.IGNORECASE)
        names = _label_names_beside(path.with_name(stem + ".tsv"))
        labels = [names.get(k, f"label_{k}") for k in parcel_keys]
        return Atlas(stem, keys, parcel_keys, labels, str(path), affine=np.asarray(image.affine))
    raise FmriInputError.for_source(
        path, expected="a .dlabel.nii or a label .nii/.nii.gz atlas", found=f"{''.join(path.suffixes) or 'no suffix'}"
    )


def _label_names_beside(table: Path) -> dict[int, str]:
    if not table.is_file():
        return {}
    lines = [line.split("\t") for line in table.read_text(encoding="utf-8").splitlines() if line.strip()]
    header = [cell.strip().lower() for cell in lines[0]]
    if "index" not in header or "name" not in header:
        raise FmriInputError.for_source(table, expected="columns 'index' and 'name'", found=f"columns {lines[0]}")
    index_column, name_column = header.index("index"), header.index("name")
    return {int(row[index_column]): row[name_column].strip() for row in lines[1:]}


def parcellate(series: FmriSeries, atlas: Atlas) -> FmriSeries:
    """Mean signal of each parcel, in the atlas's fixed order: `(num_parcels, T)` with `roi_labels` = parcel names.

    Dense CIFTI series must have the atlas's grayordinates (same structures and vertices, same order); volumes
    `(1, H, W, D, T)` must have its spatial shape.
    """
    from scipy import sparse

    if atlas.grayordinates is not None:
        if series.data.ndim != 2 or series.roi_labels != atlas.grayordinates:
            found = f"{series.data.shape[0]} grayordinates" if series.data.ndim == 2 else f"shape {series.data.shape}"
            raise FmriInputError.for_source(
                series.source,
                expected=f"the {len(atlas.grayordinates)} grayordinates of atlas {atlas.name}",
                found=f"{found} that differ",
            )
        values, keys = series.data, atlas.keys
    else:
        if series.data.ndim != 5 or series.data.shape[0] != 1 or series.data.shape[1:4] != atlas.keys.shape:
            raise FmriInputError.for_source(
                series.source,
                expected=f"a (1, {', '.join(map(str, atlas.keys.shape))}, T) volume for atlas {atlas.name}",
                found=f"shape {series.data.shape}",
            )
        values, keys = series.data.reshape(-1, series.data.shape[-1]), atlas.keys.reshape(-1)
    position = {key: index for index, key in enumerate(atlas.parcel_keys)}
    members = np.flatnonzero(np.isin(keys, atlas.parcel_keys))
    rows = np.array([position[k] for k in keys[members]], dtype=np.int64)
    counts = np.bincount(rows, minlength=len(atlas.parcel_keys)).astype(np.float64)
    assignment = sparse.csr_matrix(
        (1.0 / counts[rows], (rows, members)), shape=(len(atlas.parcel_keys), values.shape[0])
    )
    means = np.asarray(assignment @ values.astype(np.float64), dtype=np.float32)
    extra = {**series.extra, "atlas": atlas.name}
    return FmriSeries(means, series.repetition_time, list(atlas.labels), series.source, extra)
