import logging

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoProcessor

from r2tnet_hf import FmriInputError, FmriProcessor, R2TNetConfig, RoiTransformerConfig
from r2tnet_hf.data.io import parcel_order_hash

LABELS = [f"roi_{i:02d}" for i in range(6)]


def write_tsv(path, data_vt, labels=None, delimiter="\t"):
    """Write a (V, T) series the way nilearn does: one row per timepoint, one column per ROI."""
    lines = [delimiter.join(labels)] if labels else []
    lines += [delimiter.join(f"{v:.6f}" for v in row) for row in np.asarray(data_vt).T]
    path.write_text("\n".join(lines) + "\n")
    return path


def series(rois=6, frames=50, seed=0):
    return np.random.default_rng(seed).standard_normal((rois, frames)).astype(np.float32) * 3 + 5


def test_outputs_and_zscore():
    processor = FmriProcessor(num_rois=6)
    batch = processor([series(), series(frames=30, seed=1)], repetition_time=[0.72, 2.0], return_tensors="pt")
    assert set(batch) == {"fmri_values", "attention_mask", "repetition_time"}
    assert batch["fmri_values"].shape == (2, 6, 50)
    assert batch["attention_mask"].tolist()[1] == [1] * 30 + [0] * 20
    torch.testing.assert_close(batch["repetition_time"], torch.tensor([0.72, 2.0]))
    real = batch["fmri_values"][1, :, :30].double()
    torch.testing.assert_close(real.mean(-1), torch.zeros(6, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(real.std(-1, unbiased=False), torch.ones(6, dtype=torch.float64), atol=1e-5, rtol=0)
    # padding is zeros, never a repeat of the scan
    assert batch["fmri_values"][1, :, 30:].abs().max() == 0


def test_round_trip_through_auto_classes(tmp_path):
    processor = FmriProcessor(
        num_rois=6, roi_labels=LABELS, atlas="toy6", target_repetition_time=1.0, window_length=32, crop="center"
    )
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    for auto in (AutoFeatureExtractor, AutoProcessor):
        loaded = auto.from_pretrained(tmp_path)
        assert isinstance(loaded, FmriProcessor)
        assert loaded.to_dict() == processor.to_dict()
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    data = series(frames=80)
    expected = processor(data, repetition_time=0.72, return_tensors="np")
    actual = loaded(data, repetition_time=0.72, return_tensors="np")
    np.testing.assert_array_equal(actual["fmri_values"], expected["fmri_values"])
    assert loaded.parcel_order_hash == parcel_order_hash(LABELS)


def test_processor_from_model_config():
    config = R2TNetConfig(backbone_config=RoiTransformerConfig(num_rois=94))
    assert FmriProcessor.from_model_config(config).num_rois == 94


def test_flat_rois_are_zeroed_and_reported(tmp_path, caplog):
    data = series()
    data[2] = 7.0
    path = write_tsv(tmp_path / "flat.tsv", data, LABELS)
    processor = FmriProcessor(num_rois=6)
    with caplog.at_level(logging.WARNING):
        batch = processor(str(path), repetition_time=1.0, return_tensors="np")
    assert batch["fmri_values"][0, 2].tolist() == [0.0] * 50
    assert np.isfinite(batch["fmri_values"]).all()
    assert "flat.tsv" in caplog.text and "1 constant ROIs" in caplog.text and "roi_02" in caplog.text
    with pytest.raises(FmriInputError, match=r"flat\.tsv: expected no constant ROI, found 1 constant ROIs: roi_02"):
        FmriProcessor(num_rois=6, flat_roi_policy="error")(str(path), repetition_time=1.0)


def test_resampling_to_a_target_tr_keeps_the_signal():
    tr, target, frames = 0.72, 2.0, 600
    t = np.arange(frames) * tr
    slow = np.stack([np.sin(2 * np.pi * 0.02 * t + phase) for phase in np.linspace(0, 3, 6)])
    processor = FmriProcessor(num_rois=6, target_repetition_time=target, normalization="none")
    batch = processor(slow, repetition_time=tr, return_tensors="np")
    reached = float(batch["repetition_time"][0])
    assert abs(reached - target) / target < 1e-3
    length = int(batch["attention_mask"].sum())
    assert abs(length - frames * tr / target) <= 1
    new_t = np.arange(length) * reached
    expected = np.stack([np.sin(2 * np.pi * 0.02 * new_t + phase) for phase in np.linspace(0, 3, 6)])
    inner = slice(5, length - 5)  # filter edge effects
    assert np.abs(batch["fmri_values"][0, :, inner] - expected[:, inner]).max() < 0.02


def test_windows_crop_and_cover():
    data = np.tile(np.arange(100, dtype=np.float32), (6, 1))
    processor = FmriProcessor(num_rois=6, window_length=30, normalization="none")
    start = processor(data, repetition_time=1.0, return_tensors="np")["fmri_values"][0, 0]
    assert start[0] == 0 and start[-1] == 29
    center = processor(data, repetition_time=1.0, crop="center", return_tensors="np")["fmri_values"][0, 0]
    assert center[0] == 35
    rng = np.random.default_rng(0)
    random_starts = {
        int(
            processor(data, repetition_time=1.0, crop="random", generator=rng, return_tensors="np")["fmri_values"][
                0, 0, 0
            ]
        )
        for _ in range(20)
    }
    assert len(random_starts) > 5 and min(random_starts) >= 0 and max(random_starts) <= 70
    windows = processor([data, data[:, :45]], repetition_time=1.0, all_windows=True, return_tensors="np")
    assert windows["scan_index"].tolist() == [0, 0, 0, 0, 1, 1]
    mask = windows["attention_mask"]
    assert mask.sum(1).tolist() == [30, 30, 30, 10, 30, 15]
    covered = np.concatenate([w[0][m.astype(bool)] for w, m in zip(windows["fmri_values"][:4], mask[:4])])
    np.testing.assert_array_equal(covered, np.arange(100))  # every frame exactly once, nothing wrapped
    short = processor(data[:, :20], repetition_time=1.0, return_tensors="np")
    assert short["fmri_values"].shape == (1, 6, 30) and short["attention_mask"].sum() == 20


def test_file_inputs_tsv_csv_npy(tmp_path):
    data = series()
    tsv = write_tsv(tmp_path / "a.tsv", data, LABELS)
    csv = write_tsv(tmp_path / "b.csv", data, None, delimiter=",")
    npy = tmp_path / "c.npy"
    np.save(npy, data.T)
    processor = FmriProcessor(num_rois=6, roi_labels=LABELS)
    batch = processor([str(tsv), csv, npy], repetition_time=1.5, return_tensors="np")
    np.testing.assert_allclose(batch["fmri_values"][0], batch["fmri_values"][1], atol=1e-5)
    np.testing.assert_allclose(batch["fmri_values"][0], batch["fmri_values"][2], atol=1e-5)
    expected = processor(data, repetition_time=1.5, return_tensors="np")["fmri_values"][0]
    np.testing.assert_allclose(batch["fmri_values"][2], expected, atol=1e-5)


# ---------------------------------------------------------------- bad input: each names the file
def bad_file(tmp_path, kind):
    data = series()
    if kind == "nan":
        data[1, 3] = np.nan
        return write_tsv(tmp_path / "nan.tsv", data, LABELS)
    if kind == "inf":
        data[0, 0] = np.inf
        return write_tsv(tmp_path / "inf.tsv", data, LABELS)
    if kind == "wrong_ndim":
        path = tmp_path / "ndim.npy"
        np.save(path, np.zeros((4, 5, 6)))
        return path
    if kind == "wrong_v":
        return write_tsv(tmp_path / "five.tsv", data[:5], LABELS[:5])
    if kind == "too_short":
        return write_tsv(tmp_path / "short.tsv", data[:, :8], LABELS)
    if kind == "wrong_order":  # another parcellation: same count, other names (a mere reordering is matched by name)
        return write_tsv(tmp_path / "order.tsv", data, [*LABELS[:3], "elsewhere", *LABELS[4:]])
    if kind == "empty":
        path = tmp_path / "empty.tsv"
        path.write_bytes(b"")
        return path
    if kind == "header_only":
        path = tmp_path / "header.tsv"
        path.write_text("\t".join(LABELS) + "\n")
        return path
    if kind == "unknown_type":
        path = tmp_path / "scan.mat"
        path.write_bytes(b"MATLAB 5.0")
        return path
    if kind == "corrupt_npy":
        path = tmp_path / "corrupt.npy"
        path.write_bytes(b"\x93NUMPY garbage")
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("nan", "expected finite values, found 1 NaN and 0 Inf values"),
        ("inf", "expected finite values, found 0 NaN and 1 Inf values"),
        ("wrong_ndim", r"expected a 2-D array \(timepoints, ROIs\), found 3-D"),
        ("wrong_v", r"expected 6 ROIs \(num_rois\), found 5 ROIs"),
        ("too_short", r"expected at least 16 frames \(min_length\), found 8 frames"),
        (
            "wrong_order",
            r"expected parcel order [0-9a-f]{16} \(toy6\), found parcel order [0-9a-f]{16}, first difference",
        ),
        ("empty", r"expected fMRI data, found an empty file \(0 bytes\)"),
        ("header_only", "expected at least one timepoint row, found a header and no data"),
        ("unknown_type", "found an unknown file type '.mat'"),
        ("corrupt_npy", "expected a numeric .npy array, found an unreadable file"),
    ],
)
def test_bad_files_raise_one_line_errors_naming_the_file(tmp_path, kind, message):
    path = bad_file(tmp_path, kind)
    processor = FmriProcessor(num_rois=6, roi_labels=LABELS, atlas="toy6")
    with pytest.raises(FmriInputError, match=message) as caught:
        processor(str(path), repetition_time=1.0)
    text = str(caught.value)
    assert text.startswith(str(path) + ": ") and "\n" not in text
    assert isinstance(caught.value, ValueError)


def test_missing_tr_is_refused(tmp_path):
    path = write_tsv(tmp_path / "no_tr.tsv", series(), LABELS)
    with pytest.raises(
        FmriInputError, match=r"no_tr\.tsv: expected a repetition time \(TR\) in seconds > 0, found none"
    ):
        FmriProcessor(num_rois=6)(str(path))
    with pytest.raises(FmriInputError, match=r"found 0\.0"):
        FmriProcessor(num_rois=6)(series(), repetition_time=0.0)


def test_array_errors_name_the_array():
    processor = FmriProcessor(num_rois=6)
    with pytest.raises(
        FmriInputError, match=r"<array>: expected 6 ROIs \(num_rois\), found 50 ROIs .* looks transposed"
    ):
        processor(series().T, repetition_time=1.0)
    with pytest.raises(FmriInputError, match=r"<array>: expected 2-D \(V, T\), time last, found 1-D"):
        processor(np.zeros(10), repetition_time=1.0)
    with pytest.raises(FmriInputError, match="an array, a tensor or a file path"):
        processor(object(), repetition_time=1.0)
    with pytest.raises(FmriInputError, match="parcel order"):
        FmriProcessor(roi_labels=LABELS)(series(), repetition_time=1.0, roi_labels=[*LABELS[:5], "other"])
    with pytest.raises(FmriInputError, match="expected atlas 'toy6', found atlas 'aal2'"):
        FmriProcessor(atlas="toy6")(series(), repetition_time=1.0, atlas="aal2")


def test_named_rois_in_another_order_are_matched_by_name(tmp_path):
    data = np.random.default_rng(0).standard_normal((6, 40)).astype(np.float32)
    processor = FmriProcessor(num_rois=6, roi_labels=LABELS, atlas="toy6")
    in_order = processor(str(write_tsv(tmp_path / "a.tsv", data, LABELS)), repetition_time=1.0)
    permutation = [3, 0, 5, 1, 4, 2]
    shuffled = write_tsv(tmp_path / "b.tsv", data[permutation], [LABELS[i] for i in permutation])
    reordered = processor(str(shuffled), repetition_time=1.0)
    np.testing.assert_array_equal(reordered["fmri_values"], in_order["fmri_values"])
