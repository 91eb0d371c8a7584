"""Readers: one checking entry point, `read_series`, for every fMRI file the package accepts.

Everything comes back as `FmriSeries` with time on the **last** axis: ROI series `(V, T)`, volumes `(C, H, W, D, T)`.
Tabular and NPY files are time-major on disk (one row per timepoint, as nilearn writes them) and are transposed here,
explicitly. Errors are `FmriInputError`s naming the file, in this order: missing, empty, unknown type, unreadable,
wrong dimensionality, missing TR.

Guarantees: text (tables, manifests, sidecars) is UTF-8 with any byte-order mark dropped (`read_text`); a TSV/CSV
header is found by explicit rules and an ambiguous first row is refused (`table_layout`, `header=`); the size a
NIfTI/CIFTI/NPY header claims is checked before any allocation (`check_scan_size`, `R2TNET_MAX_SCAN_GB`, default
16 GiB); every TR follows one rule, seconds within 0.05-30 (`checked_repetition_time`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FmriInputError

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


def read_series(path: str | os.PathLike, header: str = "auto") -> FmriSeries:
    """Read one fMRI file into an `FmriSeries` (time last); the type is chosen by the file name.

    Supported: `.tsv`/`.csv` (rows = timepoints, optional header of ROI names), `.npy` (`(T, V)`),
    CIFTI-2 `.dtseries.nii`/`.ptseries.nii` (TR from the series axis), NIfTI-1/2 `.nii`/`.nii.gz` 4-D volumes (TR from
    the header), returned as `(1, H, W, D, T)`, and folders of `frame_<t>.pt` files (the R2T-Net layout; no TR).

    `header` (`"auto"`, `"yes"`, `"no"`) says whether a TSV/CSV's first row is a header; see `table_layout`. Header
    sizes are checked before any data is read (`check_scan_size`); header TRs follow `checked_repetition_time`.
    """
    _check_header_choice(header)
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
        return read_table(path, header)
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


# ------------------------------------------------------------------ text files (tables, manifests, sidecars)
def read_text(path: str | os.PathLike, what: str = "a text file") -> str:
    """The text of a file as UTF-8, a byte-order mark dropped (`utf-8-sig`); other encodings are refused in one line."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FmriInputError.for_source(
            path,
            expected=f"{what} in UTF-8",
            found=f"bytes that are not UTF-8 (0x{raw[error.start]:02x} at byte {error.start})",
            hint="save the file as UTF-8",
        ) from None


HEADER_CHOICES = ("auto", "yes", "no")
HEADER_HINT = "say whether the first row names the columns: --header yes or --header no, or FmriProcessor header="
_INTEGER = re.compile(r"[+-]?\d+")
_INTEGER_TEXT = re.compile(r"[0-9+\-\s,]*")


@dataclass
class TableLayout:
    """How a TSV/CSV splits into a header and data rows (see `table_layout`)."""

    header: str  # "names", "column numbers" or "none"
    labels: list[str] | None  # ROI names from the header ("names" only)
    data_lines: list[str]
    columns: int | None = None  # cells in the header, when there is one


def _check_header_choice(header: str) -> str:
    if header not in HEADER_CHOICES:
        raise FmriInputError.for_source("header", expected=f"one of {', '.join(HEADER_CHOICES)}", found=repr(header))
    return header


def _is_column_numbers(cells: list[str]) -> bool:
    if len(cells) < 2 or not all(_INTEGER.fullmatch(cell) for cell in cells):
        return False
    numbers = [int(cell) for cell in cells]
    return numbers in (list(range(len(cells))), list(range(1, len(cells) + 1)))


def table_layout(path: str | os.PathLike, header: str = "auto") -> TableLayout:
    """Split a TSV/CSV into its header and data rows, by these rules (blank lines and `#` lines are skipped):

    - `header="yes"`: the first row is a header; `header="no"`: it is data.
    - `header="auto"`: a first row with any cell that is not a number is a header of ROI names. A first row of
      integers `0 … V-1` or `1 … V` (in order, V ≥ 2; what `pandas.DataFrame.to_csv` writes for unnamed columns) is a
      header of column numbers. A first row of other integers while the data rows are not all integers is ambiguous
      (atlas keys, or a frame?) and refused, naming `--header yes|no`. Any other numeric first row is data.

    A header of column numbers carries no ROI names, so no parcel order is checked for it (as for a headerless file).
    The text is read as UTF-8, a byte-order mark dropped.
    """
    path = Path(path)
    _check_header_choice(header)
    delimiter = TABULAR_SUFFIXES[path.suffix.lower()]
    lines = [line for line in read_text(path, "a text table").splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise FmriInputError.for_source(path, expected="at least one timepoint row", found="no rows")
    cells = [cell.strip().strip('"').strip() for cell in lines[0].split(delimiter)]
    numeric = all(_is_number(cell) for cell in cells)
    if header == "no" or (header == "auto" and numeric and not _is_column_numbers(cells)):
        if header == "auto" and all(_INTEGER.fullmatch(cell) for cell in cells):
            rest = "\n".join(lines[1:])
            if not _INTEGER_TEXT.fullmatch(rest.replace(delimiter, ",")):
                raise FmriInputError.for_source(
                    path,
                    expected="a first row that is clearly a header or clearly data",
                    found=f"a first row of integers ({', '.join(cells[:4])}{', ...' if len(cells) > 4 else ''}) "
                    "above rows of non-integer values",
                    hint=HEADER_HINT,
                )
        return TableLayout("none", None, lines)
    if numeric and _is_column_numbers(cells):
        return TableLayout("column numbers", None, lines[1:], len(cells))
    return TableLayout("names", cells, lines[1:], len(cells))


def _parse_rows(lines: list[str], delimiter: str) -> np.ndarray:
    """The numbers of `lines` as float32 `(rows, columns)`. numpy's C parser first; only a table that it refuses (an
    `n/a` or empty cell, which the converter reads as NaN for validation to report) goes through the per-cell
    converter, which is about ten times slower."""
    options = dict(delimiter=delimiter, dtype=np.float64, ndmin=2, comments="#")
    try:
        return np.loadtxt(lines, **options).astype(np.float32)
    except ValueError:
        converter = lambda text: float("nan") if text.strip().lower() in {"n/a", ""} else float(text)  # noqa: E731
        return np.loadtxt(lines, converters=converter, **options).astype(np.float32)


def read_table(path: Path, header: str = "auto") -> FmriSeries:
    """TSV/CSV with one row per timepoint and one column per ROI; the header is found by `table_layout`'s rules."""
    delimiter = TABULAR_SUFFIXES[path.suffix.lower()]
    layout = table_layout(path, header)
    if not layout.data_lines:
        raise FmriInputError.for_source(path, expected="at least one timepoint row", found="a header and no data")
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # numpy's warnings would print before the error line
            values = _parse_rows(layout.data_lines, delimiter)
    except ValueError as error:
        hint = HEADER_HINT if layout.header == "none" and header == "no" else None
        raise FmriInputError.for_source(
            path,
            expected="a numeric table (rows = timepoints, columns = ROIs)",
            found=f"unparsable content: {error}",
            hint=hint,
        ) from None
    if layout.columns is not None and layout.columns != values.shape[1]:
        raise FmriInputError.for_source(
            path, expected=f"{layout.columns} columns as in the header", found=f"{values.shape[1]} columns of data"
        )
    return FmriSeries(
        data=np.ascontiguousarray(values.T), roi_labels=layout.labels, source=str(path), extra={"header": layout.header}
    )


# ------------------------------------------------------------------ size guard
MAX_SCAN_GB_ENV = "R2TNET_MAX_SCAN_GB"
DEFAULT_MAX_SCAN_GB = 16.0


def max_scan_gib() -> float:
    """The most memory one scan may claim, in GiB: `R2TNET_MAX_SCAN_GB` (default 16)."""
    text = os.environ.get(MAX_SCAN_GB_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_SCAN_GB
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and np.isfinite(value)):
        raise FmriInputError.for_source(MAX_SCAN_GB_ENV, expected="a size in GiB > 0", found=repr(text))
    return value


def check_scan_size(path, shape, dtype, data_offset: int | None = None) -> None:
    """Refuse, before any allocation, a header whose shape × dtype exceeds `max_scan_gib()` (counting the float32
    copy the readers make), or, for an uncompressed file (`data_offset` given), claims more bytes than it holds."""
    dtype = np.dtype(dtype)
    elements = 1
    for size in shape:
        elements *= int(size)
    needed = elements * max(dtype.itemsize, 4)
    limit = max_scan_gib()
    if needed > limit * 2**30:
        raise FmriInputError.for_source(
            path,
            expected=f"a scan of at most {limit:g} GiB in memory",
            found=f"a header claiming shape {tuple(int(n) for n in shape)} {dtype}, {needed / 2**30:.4g} GiB",
            hint=f"if the file is real, raise the limit: {MAX_SCAN_GB_ENV}=<GiB>",
        )
    if data_offset is not None:
        stored, available = elements * dtype.itemsize, os.path.getsize(path) - data_offset
        if stored > available:
            raise FmriInputError.for_source(
                path,
                expected=f"{stored} bytes of data as the header's shape {tuple(int(n) for n in shape)} {dtype} implies",
                found=f"{max(available, 0)} bytes (a truncated file)",
            )


def _npy_header(path: Path):
    """`(shape, fortran_order, dtype, data_offset)` from a .npy header, without reading the data."""
    from numpy.lib import format as npy_format

    try:
        with open(path, "rb") as handle:
            version = npy_format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = npy_format.read_array_header_2_0(handle)
            return shape, fortran, dtype, handle.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise FmriInputError.for_source(
            path, expected="a numeric .npy array", found=f"an unreadable file (header: {' '.join(str(error).split())})"
        ) from None


def read_npy(path: Path) -> FmriSeries:
    """NPY array `(T, V)`, time-major like the tables. Pickled object arrays are refused; the header's size is checked
    before anything is read."""
    shape, _, dtype, offset = _npy_header(path)
    if dtype.hasobject or not np.issubdtype(dtype, np.number):
        raise FmriInputError.for_source(path, expected="a numeric array", found=f"dtype {dtype}")
    if len(shape) != 2:
        raise FmriInputError.for_source(
            path, expected="a 2-D array (timepoints, ROIs)", found=f"{len(shape)}-D {tuple(shape)}"
        )
    check_scan_size(path, shape, dtype, data_offset=offset)
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise FmriInputError.for_source(
            path, expected="a numeric .npy array", found=f"an unreadable file ({error})"
        ) from None
    if np.iscomplexobj(values):
        raise FmriInputError.for_source(path, expected="a real numeric array", found=f"dtype {values.dtype}")
    with np.errstate(all="ignore"):
        data = np.ascontiguousarray(values.T, dtype=np.float32)
    return FmriSeries(data=data, source=str(path))


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
    check_scan_size(path, image.shape, image.get_data_dtype())
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            values = np.asarray(image.dataobj, dtype=np.float32)
    except (OSError, ValueError, EOFError) as error:
        raise FmriInputError.for_source(path, expected="readable CIFTI-2 data", found=str(error)) from None
    series = FmriSeries(data=np.ascontiguousarray(values.T), roi_labels=labels, source=str(path))
    return _with_header_repetition_time(series, step, "the series axis step (seconds)")


NIFTI_TIME_UNITS_TO_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}
# One rule for every TR that enters the package (manifest, flags, FmriProcessor, NIfTI/CIFTI headers, JSON sidecars):
# seconds, within this range. Outside it the value is refused with the likely fix (800 → "write 0.8").
MIN_TR_SECONDS, MAX_TR_SECONDS = 0.05, 30.0
TR_HINT = (
    "give the TR in seconds (a manifest's repetition_time column, a JSON sidecar, --repetition-time, repetition_time=)"
)


def repetition_time_problem(value: float) -> tuple[str, str | None] | None:
    """`(found, hint)` when a TR in seconds is implausible, else `None`."""
    if not np.isfinite(value) or value <= 0:
        return f"{value:g}", None
    if value > MAX_TR_SECONDS:
        if MIN_TR_SECONDS <= value / 1000 <= MAX_TR_SECONDS:
            return f"{value:g}", f"{value:g} looks like milliseconds: write {value / 1000:g}"
        return f"{value:g}", None
    if value < MIN_TR_SECONDS:
        return f"{value:g}", "TRs are written in seconds"
    return None


def checked_repetition_time(value, source, what: str = "repetition_time") -> float | None:
    """`value` as a TR in seconds (`None` stays `None`), or a one-line `FmriInputError` naming `source`: not a number,
    not > 0, or outside the plausible 0.05-30 s (with the fix, e.g. "800 looks like milliseconds: write 0.8")."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise FmriInputError.for_source(
            source, expected=f"{what} in seconds (a number)", found=repr(value), hint=TR_HINT
        ) from None
    if not (np.isfinite(seconds) and seconds > 0):
        raise FmriInputError.for_source(source, expected=f"{what} in seconds > 0", found=f"{seconds}", hint=TR_HINT)
    problem = repetition_time_problem(seconds)
    if problem is not None:
        found, hint = problem
        raise FmriInputError.for_source(
            source,
            expected=f"{what} in seconds between {MIN_TR_SECONDS:g} and {MAX_TR_SECONDS:g}",
            found=found,
            hint=hint,
        )
    return seconds


def _with_header_repetition_time(series: FmriSeries, seconds: float, what: str) -> FmriSeries:
    """Set a TR read from a file header. An implausible one is not used: the series gets no TR and the reason, which
    `FmriProcessor` raises unless a TR is passed explicitly (manifest, --repetition-time, repetition_time=)."""
    if seconds <= 0 or not np.isfinite(seconds):
        return series  # no TR in the header: the manifest or a flag must give it
    problem = repetition_time_problem(seconds)
    if problem is None:
        series.repetition_time = seconds
        return series
    found, hint = problem
    hint = f"{hint}; " if hint else ""
    series.extra["repetition_time_error"] = str(
        FmriInputError.for_source(
            series.source,
            expected=f"{what} between {MIN_TR_SECONDS:g} and {MAX_TR_SECONDS:g} s",
            found=found,
            hint=f"{hint}a TR passed in seconds (a manifest's repetition_time column, --repetition-time or "
            "repetition_time=) is used instead of the header; or fix the header",
        )
    )
    return series


def read_nifti(path: Path) -> FmriSeries:
    """NIfTI-1/2 4-D volume `(H, W, D, T)` → `(1, H, W, D, T)`; TR from the header's fourth zoom and time unit.

    'msec'/'usec' TRs are converted to seconds; 'sec' and 'unknown' are taken as seconds. A header TR outside
    0.05-30 s (e.g. nibabel's example4d, 2000 'sec', which holds milliseconds) is not used: the scan then needs its TR
    passed explicitly (see `checked_repetition_time`).
    """
    image = _load_nibabel(path, "NIfTI")
    if len(image.shape) != 4:
        raise FmriInputError.for_source(
            path, expected="4-D (x, y, z, t)", found=f"{len(image.shape)}-D {tuple(image.shape)}"
        )
    offset = None
    if not path.name.lower().endswith(".gz"):
        offset = int(getattr(image.dataobj, "offset", 0) or 0) or None
    check_scan_size(path, image.shape, image.get_data_dtype(), data_offset=offset)
    zoom = float(image.header.get_zooms()[3])
    time_unit = image.header.get_xyzt_units()[1]
    scale = NIFTI_TIME_UNITS_TO_SECONDS.get(time_unit, 1.0)  # 'unknown' is taken as seconds, the common default
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            values = np.asarray(image.dataobj, dtype=np.float32)
    except (OSError, ValueError, EOFError, gzip.BadGzipFile) as error:
        raise FmriInputError.for_source(
            path, expected="readable NIfTI data", found=f"{type(error).__name__}: {error}"
        ) from None
    series = FmriSeries(data=values[np.newaxis], source=str(path), extra={"affine": np.asarray(image.affine)})
    return _with_header_repetition_time(series, zoom * scale, f"a header TR (pixdim[4] {zoom:g}, unit '{time_unit}')")


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
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error line says it all
                frame = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types on corrupt or pickled content
            raise FmriInputError.for_source(
                path,
                expected="a tensor saved with torch.save that loads with weights_only=True",
                found=_torch_load_reason(error),
            ) from None
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


def _torch_load_reason(error: Exception) -> str:
    """A complete, one-line account of why `torch.load(weights_only=True)` failed (torch's own text is a page)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        detail = " ".join(detail.split()).rstrip(".")
        return f"a pickle that needs more than tensors to load ({detail})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return f"{type(error).__name__}: {first}"


# ------------------------------------------------------------------ frame counts (the manifest's num_frames)
def count_frames(path: str | os.PathLike, header: str = "auto") -> int:
    """Frames in a scan, read cheaply: NIfTI/CIFTI from the header shape (no data read), NPY from its header, TSV/CSV
    by counting data rows after `table_layout`'s header rule, a `frame_<t>.pt` folder by counting its files."""
    path = Path(path)
    if path.is_dir():
        return sum(1 for p in path.glob("frame_*.pt") if FRAME_NAME.match(p.name))
    if not path.is_file() or path.stat().st_size == 0:
        raise FmriInputError.for_source(path, expected="a scan file", found="no such file or an empty file")
    name = path.name.lower()
    if path.suffix.lower() in TABULAR_SUFFIXES:
        return len(table_layout(path, header).data_lines)
    if name.endswith(".npy"):
        shape = _npy_header(path)[0]
        if len(shape) != 2:
            raise FmriInputError.for_source(path, expected="a 2-D array (timepoints, ROIs)", found=f"shape {shape}")
        return int(shape[0])
    if name.endswith(CIFTI_SERIES_SUFFIXES):
        return int(_load_nibabel(path, "CIFTI-2").shape[0])
    if name.endswith(NIFTI_SUFFIXES):
        shape = _load_nibabel(path, "NIfTI").shape
        if len(shape) != 4:
            raise FmriInputError.for_source(path, expected="4-D (x, y, z, t)", found=f"{len(shape)}-D {shape}")
        return int(shape[3])
    raise FmriInputError.for_source(path, expected="a scan file", found=f"an unknown file type {path.suffix!r}")


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
    lines = [line.split("\t") for line in read_text(table, "a label table").splitlines() if line.strip()]
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
