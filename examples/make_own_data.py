"""Write the three folders a researcher typically has, for the walkthrough (`examples/walkthrough.sh`).

The same small synthetic cohort (`r2tnet_hf.data.synthetic`: subjects with their own connectivity, rest and task
scans in two sessions) is written three ways:

- `OUT/tsv/`: BIDS derivatives, one `*_timeseries.tsv` per scan (rows = frames, a header of ROI names), as nilearn's
  maskers or xcp_d write them, with no TR in the files;
- `OUT/nifti/`: a BIDS folder of 4-D `*_bold.nii.gz` volumes (TR in the header and in JSON sidecars), each parcel's
  signal painted into its voxels with voxel noise, and the label atlas beside them
  (`OUT/nifti/atlas-toy_dseg.nii.gz` with its `atlas-toy_dseg.tsv` of names);
- `OUT/cifti/`: a BIDS folder of dense CIFTI-2 `*_bold.dtseries.nii` (surface vertices and subcortical voxels) and
  the parcellation as a CIFTI-2 `atlas-toy.dlabel.nii`.

    python examples/make_own_data.py --out runs/walkthrough/data --subjects 8
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import cifti2

from r2tnet_hf.data.io import read_series
from r2tnet_hf.data.manifest import read_manifest
from r2tnet_hf.data.synthetic import make_synthetic_cohort

VOXELS_PER_SIDE = 6  # NIfTI grid 6 × 6 × 6
SURFACE_VERTICES = 3  # per parcel on the CIFTI surface, plus 1 thalamus voxel per parcel


def parcel_names(rois: int) -> list[str]:
    networks = ("Visual", "SomMot", "DorsAttn", "SalVent", "Limbic", "Cont", "Default")
    return [f"{networks[i % len(networks)]}_{'LR'[i % 2]}_{i // 2 + 1}" for i in range(rois)]


def label_volume(rois: int) -> np.ndarray:
    """A (6, 6, 6) label image: background 0, parcels 1..rois in contiguous blocks of voxels."""
    keys = np.zeros(VOXELS_PER_SIDE**3, dtype=np.int16)
    usable = VOXELS_PER_SIDE**3 - 16  # some background
    block = usable // rois
    for parcel in range(rois):
        keys[8 + parcel * block : 8 + (parcel + 1) * block] = parcel + 1
    return keys.reshape((VOXELS_PER_SIDE,) * 3)


def write_nifti(scans, names, out: Path, rng) -> None:
    keys = label_volume(len(names))
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    atlas = nib.Nifti1Image(keys, affine)
    atlas.to_filename(out / "atlas-toy_dseg.nii.gz")
    lines = ["index\tname"] + [f"{i + 1}\t{name}" for i, name in enumerate(names)]
    (out / "atlas-toy_dseg.tsv").write_text("\n".join(lines) + "\n")
    for relative, series in scans:
        signal = np.concatenate([np.zeros((1, series.data.shape[1])), series.data])[keys]  # (6, 6, 6, T)
        volume = (100.0 + signal + 0.3 * rng.standard_normal(signal.shape)) * (keys[..., None] > 0)
        image = nib.Nifti1Image(volume.astype(np.float32), affine)
        image.header.set_xyzt_units("mm", "sec")
        image.header["pixdim"][4] = series.repetition_time
        path = out / relative.replace("_timeseries.tsv", "_bold.nii.gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        image.to_filename(path)
        sidecar = {"RepetitionTime": series.repetition_time, "TaskName": path.name.split("task-")[1].split("_")[0]}
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))


def write_cifti(scans, names, out: Path, rng) -> None:
    rois = len(names)
    surface = cifti2.BrainModelAxis.from_mask(np.ones(rois * SURFACE_VERTICES, dtype=bool), name="CortexLeft")
    mask = np.zeros((rois, 1, 1), dtype=bool)
    mask[:] = True
    thalamus = cifti2.BrainModelAxis.from_mask(mask, name="ThalamusLeft", affine=np.eye(4))
    brain = surface + thalamus
    keys = np.concatenate([np.repeat(np.arange(1, rois + 1), SURFACE_VERTICES), np.arange(1, rois + 1)])
    table = {0: ("???", (0.0, 0.0, 0.0, 0.0))}
    table.update({i + 1: (name, (0.5, 0.5, 0.5, 1.0)) for i, name in enumerate(names)})
    atlas = cifti2.Cifti2Image(keys[None].astype(np.float32), header=(cifti2.LabelAxis(["parcels"], [table]), brain))
    atlas.to_filename(out / "atlas-toy.dlabel.nii")
    for relative, series in scans:
        dense = series.data[keys - 1].T  # (T, grayordinates)
        dense = dense + 0.3 * rng.standard_normal(dense.shape)
        time = cifti2.SeriesAxis(start=0, step=series.repetition_time, size=dense.shape[0], unit="SECOND")
        path = out / relative.replace("_timeseries.tsv", "_bold.dtseries.nii")
        path.parent.mkdir(parents=True, exist_ok=True)
        cifti2.Cifti2Image(dense.astype(np.float32), header=(time, brain)).to_filename(path)


def write_participants(manifest, path: Path) -> None:
    """BIDS `participants.tsv`: one row per person with the cohort's phenotype (`score`)."""
    rows = {r.subject: r.phenotypes for r in manifest.records}
    columns = manifest.phenotype_columns
    lines = ["\t".join(["participant_id", *columns])]
    lines += ["\t".join([subject, *(values.get(c, "") for c in columns)]) for subject, values in sorted(rows.items())]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write tsv/, nifti/ and cifti/ into (replaced)")
    parser.add_argument("--subjects", type=int, default=8, help="number of people (default: %(default)s)")
    parser.add_argument("--rois", type=int, default=12, help="parcels (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=120, help="frames per scan (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    names = parcel_names(args.rois)
    make_synthetic_cohort(
        out / "tsv", subjects=args.subjects, rois=args.rois, frames=args.frames, seed=args.seed, roi_labels=names
    )
    manifest = read_manifest(out / "tsv" / "manifest.tsv")
    (out / "tsv" / "manifest.tsv").unlink()  # the researcher's folder has files only; `r2tnet manifest` finds them
    scans = [(r.path, read_series(manifest.resolve(r))) for r in manifest.records]
    for series, record in zip((s for _, s in scans), manifest.records):
        series.repetition_time = record.repetition_time
    rng = np.random.default_rng(args.seed)
    for kind, write in (("nifti", write_nifti), ("cifti", write_cifti)):
        (out / kind).mkdir(parents=True)
        write(scans, names, out / kind, rng)
    for kind in ("tsv", "nifti", "cifti"):
        write_participants(manifest, out / kind / "participants.tsv")
    print(f"wrote {out}/tsv, {out}/nifti and {out}/cifti: {len(scans)} scans of {args.subjects} people each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
