import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel import cifti2

from r2tnet_hf import FmriInputError, FmriProcessor
from r2tnet_hf.data.io import parcel_order_hash, read_series

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def write_dtseries(path, frames=20, tr=0.8):
    """A small dense CIFTI-2 series: 30 left-cortex vertices and 8 voxels of the left thalamus."""
    surface = cifti2.BrainModelAxis.from_mask(np.arange(40) < 30, name="CortexLeft")
    mask = np.zeros((2, 2, 2), dtype=bool)
    mask[:] = True
    volume = cifti2.BrainModelAxis.from_mask(mask, name="ThalamusLeft", affine=np.eye(4))
    brain = surface + volume
    series = cifti2.SeriesAxis(start=0, step=tr, size=frames, unit="SECOND")
    data = np.random.default_rng(0).standard_normal((frames, len(brain))).astype(np.float32)
    cifti2.Cifti2Image(data, header=(series, brain)).to_filename(path)
    return data, brain


def write_ptseries(path, names, frames=25, tr=1.5):
    surface = cifti2.BrainModelAxis.from_mask(np.ones(len(names) * 3, dtype=bool), name="CortexLeft")
    parcels = cifti2.ParcelsAxis.from_brain_models(
        [(name, surface[index * 3 : index * 3 + 3]) for index, name in enumerate(names)]
    )
    series = cifti2.SeriesAxis(start=0, step=tr, size=frames, unit="SECOND")
    data = np.random.default_rng(1).standard_normal((frames, len(names))).astype(np.float32)
    cifti2.Cifti2Image(data, header=(series, parcels)).to_filename(path)
    return data


def test_dtseries_grayordinates(tmp_path):
    path = tmp_path / "sub-01_task-rest_bold.dtseries.nii"
    data, _ = write_dtseries(path)
    series = read_series(path)
    assert series.data.shape == (38, 20)  # (grayordinates, T): transposed from the file's (T, grayordinates)
    np.testing.assert_array_equal(series.data, data.T)
    assert series.repetition_time == pytest.approx(0.8)
    assert series.roi_labels[0] == "CIFTI_STRUCTURE_CORTEX_LEFT:0"
    assert series.roi_labels[-1] == "CIFTI_STRUCTURE_THALAMUS_LEFT:1,1,1"
    batch = FmriProcessor(num_rois=38, min_length=4)(str(path), return_tensors="pt")
    assert batch["repetition_time"].item() == pytest.approx(0.8)


def test_ptseries_parcels_and_order_check(tmp_path):
    names = ["V1", "V2", "MT", "A1"]
    path = tmp_path / "sub-01.ptseries.nii"
    data = write_ptseries(path, names)
    series = read_series(path)
    np.testing.assert_array_equal(series.data, data.T)
    assert series.roi_labels == names and series.repetition_time == pytest.approx(1.5)
    FmriProcessor(roi_labels=names)(str(path))  # same order: accepted, TR from the file
    swapped = FmriProcessor(roi_labels=["V2", "V1", "MT", "A1"], atlas="toy", normalization="none")(str(path))
    np.testing.assert_array_equal(swapped["fmri_values"][0], data.T[[1, 0, 2, 3]])  # matched by name
    with pytest.raises(FmriInputError, match="first difference at ROI 0: 'V1' where 'V3' was expected"):
        FmriProcessor(roi_labels=["V3", "V2", "MT", "A1"], atlas="toy")(str(path))
    assert parcel_order_hash(names) != parcel_order_hash(names[::-1])


def test_tr_in_the_file_must_agree_with_the_argument(tmp_path):
    path = tmp_path / "a.ptseries.nii"
    write_ptseries(path, ["a", "b"])
    FmriProcessor(min_length=4)(str(path), repetition_time=1.5)
    with pytest.raises(
        FmriInputError, match=r"expected repetition_time 2.0 s as passed, found 1.5 s in the file header"
    ):
        FmriProcessor(min_length=4)(str(path), repetition_time=2.0)


def test_nifti_volume_from_nibabel_test_data():
    # example4d's header says 2000 'sec' (it holds milliseconds). One TR rule for every source (0.05-30 s) means the
    # header TR is not used: without a TR passed explicitly the scan is refused with the fix, with one it is read.
    series = read_series(NIBABEL_DATA / "example4d.nii.gz")
    assert series.data.shape == (1, 128, 96, 24, 2)
    assert series.repetition_time is None
    with pytest.raises(FmriInputError, match=r"found 2000 \(2000 looks like milliseconds"):
        FmriProcessor(input_type="volume", min_length=2)(str(NIBABEL_DATA / "example4d.nii.gz"))
    batch = FmriProcessor(input_type="volume", min_length=2)(
        str(NIBABEL_DATA / "example4d.nii.gz"), repetition_time=2.0, return_tensors="pt"
    )
    assert batch["fmri_values"].shape == (1, 1, 128, 96, 24, 2)
    assert batch["attention_mask"].tolist() == [[1, 1]]


def test_nifti2_example():
    series = read_series(NIBABEL_DATA / "example_nifti2.nii.gz")
    assert series.data.ndim == 5


def test_three_d_nifti_is_refused(tmp_path):
    path = tmp_path / "anat.nii.gz"
    nib.Nifti1Image(np.zeros((4, 5, 6), dtype=np.float32), np.eye(4)).to_filename(path)
    with pytest.raises(FmriInputError, match=r"anat\.nii\.gz: expected 4-D \(x, y, z, t\), found 3-D \(4, 5, 6\)"):
        read_series(path)


def test_corrupt_gzip_and_cifti1_are_refused(tmp_path):
    corrupt = tmp_path / "bold.nii.gz"
    corrupt.write_bytes(gzip.compress(b"\x00" * 400)[:30])
    with pytest.raises(FmriInputError, match=r"bold\.nii\.gz: expected a readable NIfTI file"):
        read_series(corrupt)
    dconn = NIBABEL_DATA / "row_major.dconn.nii"  # CIFTI-2, but a connectivity matrix, not a series
    with pytest.raises(FmriInputError, match=r"row_major\.dconn\.nii: expected a CIFTI-2 time series"):
        read_series(dconn)
    renamed = tmp_path / "conn.dtseries.nii"
    renamed.write_bytes(dconn.read_bytes())
    with pytest.raises(FmriInputError, match=r"conn\.dtseries\.nii: expected a series axis first"):
        read_series(renamed)
    nifti_as_cifti = tmp_path / "plain.dtseries.nii"
    nib.Nifti1Image(np.zeros((2, 2, 2, 3), dtype=np.float32), np.eye(4)).to_filename(nifti_as_cifti)
    with pytest.raises(FmriInputError, match=r"plain\.dtseries\.nii: expected a CIFTI-2 image"):
        read_series(nifti_as_cifti)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FmriInputError, match=r"nope\.tsv: expected an existing file, found no such file"):
        read_series(tmp_path / "nope.tsv")
    with pytest.raises(FmriInputError, match=r"expected a file, or a folder of frame_<t>\.pt files, found a directory"):
        read_series(tmp_path)
