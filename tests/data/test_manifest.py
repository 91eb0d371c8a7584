import json

import nibabel as nib
import numpy as np
import pytest

from r2tnet_hf import FmriInputError
from r2tnet_hf.data.manifest import manifest_from_bids, manifest_from_frames, read_manifest, write_manifest
from tests.data.test_readers_more import write_frames


def make_bids(root):
    """Two subjects; sub-01 has two sessions with rest and a task (two runs), sub-02 one session."""

    def bold(relative, tr=None, frames=6, header_tr=None):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image = nib.Nifti1Image(
            np.random.default_rng(0).standard_normal((3, 3, 2, frames)).astype(np.float32), np.eye(4)
        )
        image.header.set_xyzt_units("mm", "sec")
        # the header agrees with the sidecar that BIDS inheritance resolves (0.8 s at the top level for rest)
        image.header["pixdim"][4] = header_tr or tr or 0.8
        image.to_filename(path)
        if tr is not None:
            path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps({"RepetitionTime": tr}))

    bold("sub-01/ses-1/func/sub-01_ses-1_task-rest_bold.nii.gz", tr=2.0)
    bold("sub-01/ses-1/func/sub-01_ses-1_task-nback_run-1_bold.nii.gz", tr=2.0)
    bold("sub-01/ses-1/func/sub-01_ses-1_task-nback_run-2_bold.nii.gz", tr=2.0)
    bold("sub-01/ses-2/func/sub-01_ses-2_task-rest_bold.nii.gz")
    bold("sub-02/func/sub-02_task-rest_bold.nii.gz")
    (root / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 0.8}))
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t31\tF\nsub-02\tn/a\tM\n")
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-01" / "anat" / "sub-01_T1w.nii.gz").write_bytes(b"ignored")


def test_bids_discovery(tmp_path):
    make_bids(tmp_path)
    manifest = manifest_from_bids(tmp_path)
    rows = {(r.subject, r.session, r.task): r for r in manifest.records}
    assert len(manifest.records) == 5
    assert rows[("sub-01", "ses-1", "rest")].modality == "rest"
    assert rows[("sub-01", "ses-1_run-2", "nback")].modality == "task"
    assert rows[("sub-01", "ses-1", "rest")].repetition_time == 2.0  # sidecar beside the image
    assert rows[("sub-01", "ses-2", "rest")].repetition_time == 0.8  # top-level task-rest_bold.json
    assert rows[("sub-02", "1", "rest")].phenotypes == {"age": "", "sex": "M"}
    assert manifest.phenotype_columns == ["age", "sex"]
    out = tmp_path / "manifest.tsv"
    write_manifest(manifest, out)
    again = read_manifest(out)
    assert [(r.subject, r.session, r.path, r.repetition_time) for r in again.records] == [
        (r.subject, r.session, r.path, r.repetition_time) for r in manifest.records
    ]
    assert again.resolve(again.records[0]).is_file()


def test_frames_layout(tmp_path):
    write_frames(tmp_path / "img" / "A", frames=3)
    write_frames(tmp_path / "img" / "B", frames=3)
    manifest = manifest_from_frames(tmp_path, repetition_time=0.8)
    assert [(r.subject, r.path, r.repetition_time) for r in manifest.records] == [
        ("A", "img/A", 0.8),
        ("B", "img/B", 0.8),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "subject\tsession\tpath\nA\t1\ta.tsv\n",
            "expected columns subject, session, modality, task, path, found no modality, task",
        ),
        (
            "subject\tsession\tmodality\ttask\tpath\nA\t1\tsleep\trest\ta.tsv\n",
            "row 2: expected modality rest or task, found 'sleep'",
        ),
        (
            "subject\tsession\tmodality\ttask\tpath\trepetition_time\nA\t1\trest\trest\ta.tsv\t0\n",
            "row 2: expected repetition_time in seconds > 0",
        ),
        (
            "subject\tsession\tmodality\ttask\tpath\nA\t1\trest\trest\ta.tsv\nB\t1\trest\trest\ta.tsv\n",
            "row 3: expected each path once",
        ),
        (
            "subject\tsession\tmodality\ttask\tpath\n\t1\trest\trest\ta.tsv\n",
            "row 2: expected a subject, found an empty cell",
        ),
        ("subject\tsession\tmodality\ttask\tpath\n", "expected at least one scan row"),
    ],
)
def test_bad_manifests(tmp_path, content, message):
    path = tmp_path / "m.tsv"
    path.write_text(content)
    with pytest.raises(FmriInputError, match=message) as caught:
        read_manifest(path)
    assert str(caught.value).startswith(str(path))
