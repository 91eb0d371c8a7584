"""FmriProcessor: the one gate between fMRI data and the models.

It validates (finite values, dimensionality, V, minimum length, TR, parcel order), z-scores each ROI over time,
optionally resamples to a target TR, crops windows and pads with an attention mask. Padding never tiles or repeats
frames. Its settings are saved as `preprocessor_config.json` beside the weights and reload through
`AutoFeatureExtractor`/`AutoProcessor`.
"""

from __future__ import annotations

import functools
import os
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from transformers import BatchFeature
from transformers.feature_extraction_utils import FeatureExtractionMixin
from transformers.utils import logging

from .data.io import TR_HINT, FmriSeries, checked_repetition_time, parcellate, read_atlas, read_series
from .data.io import parcel_order_hash as compute_parcel_order_hash
from .errors import FmriInputError, describe_source

logger = logging.get_logger(__name__)

NORMALIZATIONS = ("zscore", "none")
CROP_STRATEGIES = ("start", "center", "random")
FLAT_ROI_POLICIES = ("zero", "error")
# Labels are stored in preprocessor_config.json only up to this count (parcellations, not grayordinates).
MAX_STORED_LABELS = 4096


class FmriProcessor(FeatureExtractionMixin):
    r"""
    Prepares fMRI scans for the models: `fmri_values` `(batch, V, T)` (or `(batch, C, H, W, D, T)`),
    `attention_mask` `(batch, T)` and `repetition_time` `(batch,)`.

    Args:
        input_type (`str`, *optional*, defaults to `"roi"`):
            `"roi"` for parcellated or grayordinate series `(V, T)`, `"volume"` for `(C, H, W, D, T)`.
        num_rois (`int`, *optional*):
            Expected V for ROI input; `None` accepts any.
        volume_shape (`list[int]`, *optional*):
            Expected `(C, H, W, D)` for volume input; `None` accepts any.
        atlas (`str`, *optional*):
            Name of the parcellation the model was trained on (e.g. `"schaefer400"`, `"aal2"`).
        atlas_file (`str`, *optional*):
            The parcellation file itself (a label NIfTI or a CIFTI-2 `.dlabel.nii`; `r2tnet convert --atlas` records
            it). Dense input reaching an ROI processor (4-D NIfTI volumes, `.dtseries.nii` grayordinates) is
            parcellated with it into ROI means before anything else, as `convert` did; the parcel names it gives are
            then checked against `parcel_order_hash`.
        roi_labels (`list[str]`, *optional*):
            Ordered ROI names. Their hash is stored as `parcel_order_hash`; the labels themselves are stored when there
            are at most 4096 of them.
        parcel_order_hash (`str`, *optional*):
            Hash of the ordered labels (see `r2tnet_hf.data.io.parcel_order_hash`). Inputs that carry labels (a TSV
            header, CIFTI parcels or brain models, `roi_labels=` at call time) must match it; inputs that carry the
            stored `roi_labels` in another order are reordered by name first.
        normalization (`str`, *optional*, defaults to `"zscore"`):
            `"zscore"`: each ROI (voxel) is centred and scaled to unit variance over the scan's frames. `"none"`.
        flat_roi_policy (`str`, *optional*, defaults to `"zero"`):
            What to do with a ROI whose standard deviation is below `flat_threshold` (a dead or masked-out parcel):
            `"zero"` sets it to 0 and logs a warning naming the file and the ROIs; `"error"` raises. (Flat voxels of
            volume input, i.e. background, are set to 0 silently.)
        flat_threshold (`float`, *optional*, defaults to 1e-6):
            Standard deviation below which a ROI counts as flat.
        target_repetition_time (`float`, *optional*):
            Resample every scan to this TR (seconds) with a polyphase anti-aliasing filter. The TR returned is the one
            actually reached, `TR · down / up` for the rational factor used (within 0.1% of the target).
        window_length (`int`, *optional*):
            Frames per window (after resampling). Longer scans are cropped to it, shorter ones padded to it with
            `attention_mask = 0`. `None`: whole scans, padded to the longest in the batch.
        crop (`str`, *optional*, defaults to `"start"`):
            Where the window is taken: `"start"`, `"center"` or `"random"`.
        min_length (`int`, *optional*, defaults to 16):
            Fewest frames (after resampling) a scan may have.

    Example:
        >>> import numpy as np
        >>> from r2tnet_hf import FmriProcessor
        >>> processor = FmriProcessor(num_rois=94, window_length=300)
        >>> batch = processor([np.random.randn(94, 1200)], repetition_time=0.72, return_tensors="pt")
        >>> batch["fmri_values"].shape, batch["attention_mask"].shape
        (torch.Size([1, 94, 300]), torch.Size([1, 300]))
    """

    model_input_names = ["fmri_values", "attention_mask", "repetition_time"]

    def __init__(
        self,
        input_type: str = "roi",
        num_rois: int | None = None,
        volume_shape: list[int] | None = None,
        atlas: str | None = None,
        atlas_file: str | None = None,
        roi_labels: list[str] | None = None,
        parcel_order_hash: str | None = None,
        normalization: str = "zscore",
        flat_roi_policy: str = "zero",
        flat_threshold: float = 1e-6,
        target_repetition_time: float | None = None,
        window_length: int | None = None,
        crop: str = "start",
        min_length: int = 16,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if input_type not in ("roi", "volume"):
            raise ValueError(f"input_type must be 'roi' or 'volume', got {input_type!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if flat_roi_policy not in FLAT_ROI_POLICIES:
            raise ValueError(f"flat_roi_policy must be one of {FLAT_ROI_POLICIES}, got {flat_roi_policy!r}")
        if crop not in CROP_STRATEGIES:
            raise ValueError(f"crop must be one of {CROP_STRATEGIES}, got {crop!r}")
        target_repetition_time = checked_repetition_time(
            target_repetition_time, "target_repetition_time", "target_repetition_time"
        )
        if window_length is not None and window_length < 1:
            raise ValueError(f"window_length must be >= 1, got {window_length}")
        if roi_labels is not None:
            roi_labels = [str(label) for label in roi_labels]
            if num_rois is not None and len(roi_labels) != num_rois:
                raise ValueError(f"{len(roi_labels)} roi_labels for num_rois={num_rois}")
            num_rois = len(roi_labels)
            computed = compute_parcel_order_hash(roi_labels)
            if parcel_order_hash is not None and parcel_order_hash != computed:
                raise ValueError(f"parcel_order_hash {parcel_order_hash} does not match the roi_labels ({computed})")
            parcel_order_hash = computed
            if len(roi_labels) > MAX_STORED_LABELS:
                roi_labels = None
        self.input_type = input_type
        self.num_rois = num_rois
        self.volume_shape = list(volume_shape) if volume_shape is not None else None
        self.atlas = atlas
        self.atlas_file = None if atlas_file is None else str(atlas_file)
        self.roi_labels = roi_labels
        self.parcel_order_hash = parcel_order_hash
        self.normalization = normalization
        self.flat_roi_policy = flat_roi_policy
        self.flat_threshold = float(flat_threshold)
        self.target_repetition_time = target_repetition_time
        self.window_length = window_length
        self.crop = crop
        self.min_length = int(min_length)

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        fmri,
        repetition_time: float | list[float | None] | None = None,
        *,
        roi_labels: list[str] | None = None,
        atlas: str | None = None,
        crop: str | None = None,
        all_windows: bool = False,
        generator: np.random.Generator | None = None,
        return_tensors: str | None = None,
        header: str = "auto",
    ) -> BatchFeature:
        r"""
        Args:
            fmri: one scan or a list of scans. A scan is an array or tensor laid out `(V, T)` (or `(C, H, W, D, T)`),
                time last, or a path to a `.tsv`/`.csv`/`.npy` (rows = timepoints), CIFTI-2 `.ptseries.nii`/
                `.dtseries.nii` or NIfTI file.
            repetition_time (`float` or `list`): TR in seconds, one for all scans or one per scan. Files that carry a TR
                (CIFTI, NIfTI) may leave it out; if both are given they must agree.
            roi_labels (`list[str]`, *optional*): the ordered ROI names of array input, checked against
                `parcel_order_hash`.
            atlas (`str`, *optional*): the input's atlas name, checked against `self.atlas`.
            crop (`str`, *optional*): overrides `self.crop` for this call.
            all_windows (`bool`, *optional*, defaults to `False`): instead of one window per scan, return every
                consecutive window of `window_length` frames (the last one padded, never wrapped), with `scan_index`
                naming the scan each row came from.
            generator (`np.random.Generator`, *optional*): randomness for `crop="random"`.
            return_tensors (`str`, *optional*): `"pt"` for torch tensors, `"np"` for numpy arrays.
            header (`str`, *optional*, defaults to `"auto"`): whether the first row of TSV/CSV files names the columns,
                `"yes"`, `"no"` or `"auto"` (the rules of `r2tnet_hf.data.io.table_layout`). A property of the data
                files, not of the model: given per call, never saved in `preprocessor_config.json`.

        Returns:
            `BatchFeature` with `fmri_values`, `attention_mask` (1 = real frame), `repetition_time`, and `scan_index`
            when `all_windows=True`.
        """
        scans, trs = _scans_and_repetition_times(fmri, repetition_time)
        crop = crop or self.crop
        if crop not in CROP_STRATEGIES:
            raise ValueError(f"crop must be one of {CROP_STRATEGIES}, got {crop!r}")
        if atlas is not None and self.atlas is not None and atlas != self.atlas:
            raise FmriInputError.for_source(None, expected=f"atlas {self.atlas!r}", found=f"atlas {atlas!r}")
        generator = generator if generator is not None else np.random.default_rng()
        rows, row_trs, scan_index = [], [], []
        for index, (scan, tr) in enumerate(zip(scans, trs)):
            series = self.prepare(scan, tr, roi_labels=roi_labels, header=header)
            windows = self._windows(series.data, all_windows, crop, generator)
            rows += windows
            row_trs += [series.repetition_time] * len(windows)
            scan_index += [index] * len(windows)
        values, mask = self.pad(rows)
        data = {
            "fmri_values": values,
            "attention_mask": mask,
            "repetition_time": np.asarray(row_trs, dtype=np.float32),
        }
        if all_windows:
            data["scan_index"] = np.asarray(scan_index, dtype=np.int64)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _windows(self, data: np.ndarray, all_windows: bool, crop: str, generator: np.random.Generator) -> list:
        """The windows `__call__` takes from one prepared scan: every consecutive window with `all_windows` (and a
        `window_length`), else one cropped window."""
        if all_windows and self.window_length is not None:
            return self.sliding_windows(data)
        return [self.crop_window(data, crop, generator)]

    def prepare(
        self,
        scan,
        repetition_time: float | None = None,
        roi_labels: list[str] | None = None,
        header: str = "auto",
    ) -> FmriSeries:
        """Load, validate, resample and normalise one scan; no windowing or padding. Returns an `FmriSeries`.

        numpy's floating-point warnings are silenced here: what they would warn of (overflow, NaN) is checked and
        refused in one line instead, so no warning is printed before the error.
        """
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            series = self.match_labels(self.load(scan, repetition_time, roi_labels, header=header))
            self.validate(series)
            series = self.resample(series)
            if series.num_timepoints < self.min_length:
                raise FmriInputError.for_source(
                    series.source,
                    expected=f"at least {self.min_length} frames (min_length)",
                    found=f"{series.num_timepoints} frames",
                )
            series = self.normalize(series)
            if not np.isfinite(series.data).all():
                raise FmriInputError.for_source(
                    series.source,
                    expected="values that stay finite when resampled and normalised in float32",
                    found="non-finite values after resampling or z-scoring (input values too large for float32)",
                )
        return series

    # ------------------------------------------------------------------ steps
    def load(self, scan, repetition_time=None, roi_labels=None, header: str = "auto") -> FmriSeries:
        if isinstance(scan, (str, os.PathLike)):
            series = read_series(Path(scan), header=header)
        elif isinstance(scan, FmriSeries):
            series = FmriSeries(scan.data, scan.repetition_time, scan.roi_labels, scan.source, dict(scan.extra))
        elif torch.is_tensor(scan) or isinstance(scan, np.ndarray):
            array = scan.detach().cpu().numpy() if torch.is_tensor(scan) else scan
            if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
                raise FmriInputError.for_source(None, expected="a real numeric array", found=f"dtype {array.dtype}")
            series = FmriSeries(data=array, roi_labels=roi_labels)
        else:
            raise FmriInputError.for_source(
                None, expected="an array, a tensor or a file path", found=f"{type(scan).__name__}"
            )
        series = self.parcellate(series)
        with np.errstate(all="ignore"):  # values beyond float32 become Inf, refused by `validate`
            series.data = np.asarray(series.data, dtype=np.float32)
        if roi_labels is not None:
            series.roi_labels = [str(label) for label in roi_labels]
        repetition_time = checked_repetition_time(repetition_time, series.source, "repetition_time as passed")
        if repetition_time is not None:
            if series.repetition_time is not None and not np.isclose(
                series.repetition_time, repetition_time, rtol=1e-3
            ):
                raise FmriInputError.for_source(
                    series.source,
                    expected=f"repetition_time {repetition_time} s as passed",
                    found=f"{series.repetition_time} s in the file header",
                    hint="correct the header or the manifest/sidecar RepetitionTime so they agree",
                )
            series.repetition_time = float(repetition_time)
        return series

    def resolve_atlas_file(self, folder: str | os.PathLike) -> FmriProcessor:
        """Make a relative `atlas_file` (a published model ships its atlas as `atlas/<file>`) absolute, taken from the
        folder the processor was loaded from."""
        if self.atlas_file is not None and not os.path.isabs(self.atlas_file):
            self.atlas_file = str((Path(folder) / self.atlas_file).resolve())
        return self

    def parcellate(self, series: FmriSeries) -> FmriSeries:
        """Dense input (a volume, or the grayordinates of a CIFTI atlas) → ROI means with `atlas_file`; anything else
        is returned as it is."""
        if self.input_type != "roi" or self.atlas_file is None:
            return series
        atlas = _cached_atlas(self.atlas_file)
        dense = series.data.ndim == 5 if atlas.grayordinates is None else (
            series.data.ndim == 2 and series.data.shape[0] == len(atlas.grayordinates)
        )  # fmt: skip
        return parcellate(series, atlas) if dense else series

    def match_labels(self, series: FmriSeries) -> FmriSeries:
        """Put named ROIs in the processor's order: a scan whose ROI names are the processor's `roi_labels` in
        another order is reordered by name (ROI series only). Anything else is left for `validate` to judge."""
        expected, found = self.roi_labels, series.roi_labels
        if self.input_type != "roi" or expected is None or found is None or list(found) == list(expected):
            return series
        if len(found) != len(expected) or len(set(found)) != len(found) or set(found) != set(expected):
            return series
        if series.data.ndim != 2 or series.data.shape[0] != len(found):
            return series
        position = {label: index for index, label in enumerate(found)}
        order = [position[label] for label in expected]
        logger.info("%s: ROIs reordered by name to the processor's parcel order", series.source or "input")
        series.data = series.data[order]
        series.roi_labels = list(expected)
        return series

    def validate(self, series: FmriSeries) -> None:
        """Check dimensionality, V (or volume shape), finiteness, TR and parcel order; raise `FmriInputError`."""
        source, data = series.source, series.data
        expected_ndim = 2 if self.input_type == "roi" else 5
        layout = "(V, T)" if self.input_type == "roi" else "(C, H, W, D, T)"
        if data.ndim != expected_ndim:
            hint = None
            if self.input_type == "roi" and data.ndim == 5:
                hint = (
                    f"a volume: pass the parcellation the model was trained with ({self.atlas or 'its atlas'}) as "
                    "--atlas FILE, or FmriProcessor(atlas_file=...)"
                )
            raise FmriInputError.for_source(
                source,
                expected=f"{expected_ndim}-D {layout}, time last",
                found=f"{data.ndim}-D {tuple(data.shape)}",
                hint=hint,
            )
        if self.input_type == "roi" and self.num_rois is not None and data.shape[0] != self.num_rois:
            hint = "the array looks transposed; arrays are (V, T)" if data.shape[1] == self.num_rois else None
            raise FmriInputError.for_source(
                source,
                expected=f"{self.num_rois} ROIs (num_rois)",
                found=f"{data.shape[0]} ROIs {tuple(data.shape)}",
                hint=hint,
            )
        if self.input_type == "volume" and self.volume_shape is not None and list(data.shape[:4]) != self.volume_shape:
            raise FmriInputError.for_source(
                source,
                expected=f"volume shape {tuple(self.volume_shape)} (C, H, W, D)",
                found=f"{tuple(data.shape[:4])}",
            )
        if data.shape[-1] == 0:
            raise FmriInputError.for_source(source, expected="at least one frame", found="0 frames")
        finite = np.isfinite(data)
        if not finite.all():
            bad = np.argwhere(~finite)
            nan_count, inf_count = int(np.isnan(data).sum()), int(np.isinf(data).sum())
            raise FmriInputError.for_source(
                source,
                expected="finite values",
                found=f"{nan_count} NaN and {inf_count} Inf values, first at index {tuple(int(i) for i in bad[0])}",
            )
        tr = series.repetition_time
        if tr is None and series.extra.get("repetition_time_error"):
            raise FmriInputError(series.extra["repetition_time_error"], source=source)  # an implausible header TR
        if tr is None:
            raise FmriInputError.for_source(
                source, expected="a repetition time (TR) in seconds > 0", found="none", hint=TR_HINT
            )
        checked_repetition_time(tr, source, "a repetition time (TR)")
        if series.roi_labels is not None and self.parcel_order_hash is not None:
            found_hash = compute_parcel_order_hash(series.roi_labels)
            if found_hash != self.parcel_order_hash:
                raise FmriInputError.for_source(
                    source,
                    expected=f"parcel order {self.parcel_order_hash} ({self.atlas or 'the training atlas'})",
                    found=f"parcel order {found_hash}{self._first_label_difference(series.roi_labels)}",
                )

    def _first_label_difference(self, labels: list[str]) -> str:
        if self.roi_labels is None:
            return ""
        for index, (expected, found) in enumerate(zip(self.roi_labels, labels)):
            if expected != found:
                return f", first difference at ROI {index}: {found!r} where {expected!r} was expected"
        return ""

    def resample(self, series: FmriSeries) -> FmriSeries:
        """Resample along time to `target_repetition_time` with `scipy.signal.resample_poly` (anti-aliased)."""
        target = self.target_repetition_time
        if target is None or np.isclose(series.repetition_time, target, rtol=1e-6):
            return series
        from scipy.signal import resample_poly

        # New sampling rate / old = TR_old / TR_new = up / down.
        ratio = Fraction(series.repetition_time / target).limit_denominator(1000)
        up, down = ratio.numerator, ratio.denominator
        resampled = resample_poly(series.data.astype(np.float64), up, down, axis=-1, padtype="line")
        series.data = resampled.astype(np.float32)
        series.repetition_time = series.repetition_time * down / up
        return series

    def normalize(self, series: FmriSeries) -> FmriSeries:
        """Per-ROI (per-voxel) temporal z-score; flat ROIs are zeroed and reported, or refused."""
        if self.normalization == "none":
            return series
        data = series.data
        mean = data.mean(axis=-1, keepdims=True, dtype=np.float64)
        std = data.std(axis=-1, keepdims=True, dtype=np.float64)
        flat = std[..., 0] < self.flat_threshold
        if flat.all():
            raise FmriInputError.for_source(
                series.source, expected="signal varying over time", found="every ROI is constant"
            )
        if flat.any() and self.input_type == "roi":
            indices = np.flatnonzero(flat).tolist()
            names = [series.roi_labels[i] for i in indices] if series.roi_labels else indices
            shown = ", ".join(map(str, names[:10])) + (" ..." if len(names) > 10 else "")
            if self.flat_roi_policy == "error":
                raise FmriInputError.for_source(
                    series.source, expected="no constant ROI", found=f"{len(indices)} constant ROIs: {shown}"
                )
            logger.warning(
                f"{describe_source(series.source)}: {len(indices)} constant ROIs set to 0 after z-scoring: {shown}"
            )
        safe_std = np.where(flat[..., None], 1.0, std)
        normalized = (data - mean.astype(np.float32)) / safe_std.astype(np.float32)
        normalized[flat] = 0.0
        series.data = normalized
        return series

    def crop_window(self, data: np.ndarray, crop: str, generator: np.random.Generator) -> np.ndarray:
        length = self.window_length
        frames = data.shape[-1]
        if length is None or frames <= length:
            return data
        if crop == "start":
            start = 0
        elif crop == "center":
            start = (frames - length) // 2
        else:
            start = int(generator.integers(0, frames - length + 1))
        return data[..., start : start + length]

    def sliding_windows(self, data: np.ndarray) -> list[np.ndarray]:
        length = self.window_length
        return [data[..., start : start + length] for start in range(0, data.shape[-1], length)]

    def pad(self, rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Zero-pad along time to `window_length` (or the longest row); the mask marks real frames. Never tiles."""
        longest = max(row.shape[-1] for row in rows)
        length = max(longest, self.window_length or 0)
        values = np.zeros((len(rows), *rows[0].shape[:-1], length), dtype=np.float32)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for index, row in enumerate(rows):
            if row.shape[:-1] != rows[0].shape[:-1]:
                raise FmriInputError.for_source(
                    None, expected=f"scans of one shape {rows[0].shape[:-1]} in a batch", found=f"{row.shape[:-1]}"
                )
            values[index, ..., : row.shape[-1]] = row
            mask[index, : row.shape[-1]] = 1
        return values, mask

    # ------------------------------------------------------------------ helpers
    @classmethod
    def from_model_config(cls, config, **kwargs) -> FmriProcessor:
        """A processor matching a model config (R2T-Net or backbone): expected V, or volume shape."""
        backbone = getattr(config, "backbone_config", None) or config
        if hasattr(backbone, "num_rois") and getattr(backbone, "input_type", "roi") == "roi":
            return cls(input_type="roi", num_rois=backbone.num_rois, **kwargs)
        if hasattr(backbone, "image_size"):
            return cls(input_type="volume", volume_shape=[backbone.num_channels, *backbone.image_size], **kwargs)
        return cls(**kwargs)


@functools.lru_cache(maxsize=4)
def _read_atlas_once(path: str, size: int, mtime_ns: int):
    return read_atlas(path)


def _cached_atlas(path: str):
    """The atlas at `path`, read once per file version."""
    try:
        stat = os.stat(path)
    except OSError:
        raise FmriInputError.for_source(
            path, expected="the atlas file recorded in the processor (atlas_file)", found="no such file",
            hint="pass the atlas with --atlas FILE",
        ) from None  # fmt: skip
    return _read_atlas_once(path, stat.st_size, stat.st_mtime_ns)


def _scans_and_repetition_times(fmri, repetition_time) -> tuple[list, list]:
    """`FmriProcessor.__call__`'s scans as a list, and one repetition time per scan."""
    scans = list(fmri) if isinstance(fmri, (list, tuple)) else [fmri]
    if not scans:
        raise FmriInputError.for_source(None, expected="at least one scan", found="an empty list")
    trs = list(repetition_time) if isinstance(repetition_time, (list, tuple)) else [repetition_time] * len(scans)
    if len(trs) != len(scans):
        raise FmriInputError.for_source(
            None, expected=f"one repetition_time per scan ({len(scans)})", found=f"{len(trs)} values"
        )
    return scans, trs


__all__ = ["FmriInputError", "FmriProcessor"]
