"""Readers added for the data pipeline: frame_*.pt folders, atlases and parcellation."""

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel import cifti2

from r2tnet_hf import FmriInputError
from r2tnet_hf.data.io import parcellate, read_atlas, read_series
from tests.data.test_io import write_dtseries


def write_frames(folder, frames=5, shape=(1, 4, 4, 3), seed=0):
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    volumes = [torch.randn(shape, generator=generator) for _ in range(frames)]
    for index, volume in enumerate(volumes):
        torch.save(volume, folder / f"frame_{index}.pt")
    return torch.stack(volumes, dim=-1)


def test_frames_folder_is_stacked_in_numeric_order(tmp_path):
    expected = write_frames(tmp_path / "img" / "subj1", frames=12)
    series = read_series(tmp_path / "img" / "subj1")
    assert series.data.shape == (1, 4, 4, 3, 12)
    np.testing.assert_array_equal(series.data, expected.numpy())  # frame_10 after frame_9, not after frame_1
    assert series.repetition_time is None


def test_frames_folder_errors(tmp_path):
    folder = tmp_path / "gap"
    write_frames(folder, frames=4)
    (folder / "frame_2.pt").unlink()
    with pytest.raises(FmriInputError, match=r"gap: expected consecutive frame numbers, found missing frame\(s\) 2"):
        read_series(folder)
    folder = tmp_path / "pickle"
    write_frames(folder, frames=2)
    torch.save({"not": "a tensor", "fn": print}, folder / "frame_1.pt")
    with pytest.raises(FmriInputError, match=r"frame_1\.pt: expected a tensor saved with torch.save"):
        read_series(folder)  # weights_only=True refuses arbitrary pickles
    folder = tmp_path / "shape"
    write_frames(folder, frames=2)
    torch.save(torch.zeros(1, 4, 4, 4), folder / "frame_1.pt")
    with pytest.raises(FmriInputError, match=r"frame_1\.pt: expected shape \(1, 4, 4, 3\) like frame_0\.pt"):
        read_series(folder)
    folder = tmp_path / "threed"
    folder.mkdir()
    torch.save(torch.zeros(4, 4, 3), folder / "frame_0.pt")
    with pytest.raises(FmriInputError, match=r"expected a 4-D \(C, H, W, D\) tensor, found 3-D"):
        read_series(folder)


def write_dlabel(path, brain_models, keys, names):
    table = {0: ("???", (0, 0, 0, 0))}
    table.update({key: (name, (1.0, 0.0, 0.0, 1.0)) for key, name in names.items()})
    labels = cifti2.LabelAxis(["parcels"], [table])
    cifti2.Cifti2Image(np.asarray(keys, dtype=np.float32)[None], header=(labels, brain_models)).to_filename(path)


def test_dlabel_parcellation_of_a_dense_series(tmp_path):
    dense = tmp_path / "sub-01.dtseries.nii"
    data, brain = write_dtseries(dense)  # 38 grayordinates × 20 frames
    keys = np.zeros(38, dtype=int)
    keys[:10], keys[10:30], keys[30:] = 2, 1, 5  # key 0 (background) is unused here
    atlas_path = tmp_path / "toy.dlabel.nii"
    write_dlabel(atlas_path, brain, keys, {1: "B_parcel", 2: "A_parcel", 5: "thalamus"})
    atlas = read_atlas(atlas_path)
    assert atlas.name == "toy" and atlas.labels == ["B_parcel", "A_parcel", "thalamus"]  # ordered by key
    parcellated = parcellate(read_series(dense), atlas)
    assert parcellated.roi_labels == ["B_parcel", "A_parcel", "thalamus"]
    np.testing.assert_allclose(parcellated.data[0], data[:, 10:30].mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(parcellated.data[1], data[:, :10].mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(parcellated.data[2], data[:, 30:].mean(axis=1), atol=1e-5)
    other = tmp_path / "other.dtseries.nii"
    series = cifti2.SeriesAxis(start=0, step=0.8, size=20, unit="SECOND")
    cifti2.Cifti2Image(np.zeros((20, 30), np.float32), header=(series, brain[:30])).to_filename(other)
    with pytest.raises(FmriInputError, match=r"other\.dtseries\.nii: expected the 38 grayordinates of atlas toy"):
        parcellate(read_series(other), atlas)


def test_label_nifti_parcellation_of_a_volume(tmp_path):
    volume = np.random.default_rng(0).standard_normal((4, 4, 3, 10)).astype(np.float32)
    image = nib.Nifti1Image(volume, np.eye(4))
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 2.0
    bold = tmp_path / "bold.nii.gz"
    image.to_filename(bold)
    labels = np.zeros((4, 4, 3), dtype=np.int16)
    labels[:2] = 3
    labels[2:, :2] = 7
    atlas_path = tmp_path / "atlas.nii.gz"
    nib.Nifti1Image(labels, np.eye(4)).to_filename(atlas_path)
    (tmp_path / "atlas.tsv").write_text("index\tname\n3\tfront\n7\tback\n")
    atlas = read_atlas(atlas_path)
    assert atlas.labels == ["front", "back"]
    parcellated = parcellate(read_series(bold), atlas)
    assert parcellated.data.shape == (2, 10) and parcellated.repetition_time == pytest.approx(2.0)
    np.testing.assert_allclose(parcellated.data[0], volume[:2].reshape(-1, 10).mean(0), atol=1e-5)
    np.testing.assert_allclose(parcellated.data[1], volume[2:, :2].reshape(-1, 10).mean(0), atol=1e-5)
    small = tmp_path / "small.nii.gz"
    nib.Nifti1Image(volume[:3], np.eye(4)).to_filename(small)
    with pytest.raises(FmriInputError, match=r"small\.nii\.gz: expected a \(1, 4, 4, 3, T\) volume for atlas atlas"):
        parcellate(read_series(small), atlas)
