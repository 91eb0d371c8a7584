"""The real cohorts read from PyPI wheels: connattractor's development subjects (1-16 only) and splits files."""

import json

import numpy as np
import pytest

from r2tnet_hf import FmriInputError
from r2tnet_hf.data.demo import find_connattractor, load_connattractor, write_connattractor_cohort
from r2tnet_hf.data.manifest import read_manifest
from r2tnet_hf.data.splits import load_splits


@pytest.fixture(scope="module")
def connattractor():
    try:
        find_connattractor()
    except ValueError:
        pytest.skip("connattractor is not installed (pip install 'r2tnet-hf[demo]')")
    return load_connattractor()


def test_the_development_cohort_is_16_subjects_3_runs_119_parcels(connattractor):
    assert len(connattractor) == 48
    assert {s.extra["subject"] for s in connattractor} == {f"sub-{k:02d}" for k in range(1, 17)}
    assert all(s.data.shape[0] == 119 and 185 <= s.data.shape[1] <= 215 for s in connattractor)
    assert all(s.repetition_time == 2.0 and np.isfinite(s.data).all() for s in connattractor)
    labels = connattractor[0].roi_labels
    assert len(set(labels)) == 119 and labels[0].startswith("mist_001_")  # MIST names repeat; ours do not
    assert all((s.data.std(axis=1) > 0).all() for s in connattractor)  # no constant parcel in any run
    # run 01 of subject k lives in the file numbered k + 1
    first = next(s for s in connattractor if s.extra == {"subject": "sub-01", "session": "run-01"})
    assert first.source.endswith("sub-02_ts.txt")


def test_the_held_out_subjects_are_never_read():
    with pytest.raises(ValueError, match="held-out test"):
        load_connattractor([16, 17])


def test_the_cohort_writes_a_manifest_of_runs_as_sessions(connattractor, tmp_path):
    manifest = read_manifest(write_connattractor_cohort(tmp_path, subjects=[1, 2]))
    assert [r.session for r in manifest.records[:3]] == ["run-01", "run-03", "run-07"]
    assert {r.modality for r in manifest.records} == {"task"} and len(manifest.records) == 6


def test_a_plain_splits_file_is_read_and_bad_ones_are_one_line(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"train": ["a", "b"], "validation": ["c"], "test": ["4"]}))
    assert load_splits(plain) == {"train": ["a", "b"], "validation": ["c"], "test": ["4"]}
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps({"seed": 0, "splits": {"train": ["a"], "validation": [], "test": ["b"]}}))
    assert load_splits(saved) == {"train": ["a"], "validation": [], "test": ["b"]}
    every = {"train": ["a"], "validation": [], "test": []}
    for content, message in (
        ({**every, "validation": ["a"]}, "share 1 subjects"),
        ({**every, "training": ["a"]}, "only the keys train, validation, test"),
        ({**every, "train": "a"}, "to be a list of subject names"),
        ([1, 2], "found a JSON array"),
        ({"train": ["a"], "test": ["b"]}, 'no validation split .* "validation": \\[\\]'),  # missing: not silently empty
        ({**every, "test": [4]}, "subject names as strings"),  # numbers: quoted as in the manifest, never guessed
    ):
        plain.write_text(json.dumps(content))
        with pytest.raises(FmriInputError, match=message) as error:
            load_splits(plain)
        assert str(plain) in str(error.value) and "\n" not in str(error.value)
