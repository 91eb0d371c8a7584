"""Splits files (every format a user has, one reader, one-line errors) and `r2tnet split` refusing empty splits."""

import csv
import json

import pytest
from accelerate import Accelerator

from r2tnet_hf.cli import main
from r2tnet_hf.data.manifest import read_manifest
from r2tnet_hf.data.shards import ConvertOptions, convert
from r2tnet_hf.data.splits import load_splits, make_splits, save_splits, splits_from_manifest
from r2tnet_hf.data.streaming import ShardFolder
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from r2tnet_hf.errors import FmriInputError
from r2tnet_hf.training.config import RunConfig
from r2tnet_hf.training.loop import resolve_splits

SUBJECTS = [f"sub-{k:03d}" for k in range(1, 11)]
EXPECTED = {"train": SUBJECTS[:6], "validation": SUBJECTS[6:8], "test": SUBJECTS[8:]}


def cohort_with_columns(folder, columns):
    """A 10-subject synthetic cohort whose manifest gains phenotype columns: `columns[name](subject number)`."""
    make_synthetic_cohort(folder, subjects=10, sessions=1, rois=4, frames=32, seed=0)
    manifest = folder / "manifest.tsv"
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        number = int(row["subject"].split("-")[1])
        row.update({name: value(number) for name, value in columns.items()})
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.mark.parametrize(
    "content",
    [
        {"seed": 3, "splits": EXPECTED},  # what `r2tnet split` and a training run's splits.json hold
        EXPECTED,  # a plain file
        {"train": EXPECTED["train"], "val": EXPECTED["validation"], "test": EXPECTED["test"]},  # "val" for validation
    ],
    ids=["r2tnet-split", "plain", "val-alias"],
)
def test_every_splits_file_format_reads_the_same(tmp_path, content):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(content))
    assert load_splits(path) == EXPECTED
    save_splits(EXPECTED, tmp_path / "saved.json", seed=0)
    assert load_splits(tmp_path / "saved.json") == EXPECTED


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("train: [sub-001]", "found invalid JSON (Expecting value at line 1 column 1)"),
        (json.dumps([SUBJECTS]), "found a JSON array"),
        (json.dumps({"splits": "train"}), "found a JSON string"),
        (
            json.dumps({"train": SUBJECTS[:6], "test": SUBJECTS[8:]}),
            "found no validation split (keys ['test', 'train'])",
        ),
        (
            json.dumps({**EXPECTED, "test": "sub-009"}),
            "expected 'test' to be a list of subject names, found a JSON string",
        ),
        (json.dumps({**EXPECTED, "train": [1, 2]}), "found 1 (a JSON number)"),
        (json.dumps({**EXPECTED, "seed": 0}), "found 'seed'"),
        (json.dumps({**EXPECTED, "val": []}), "found both 'val' and 'validation'"),
        (json.dumps({**EXPECTED, "test": SUBJECTS[7:]}), "share 1 subjects: sub-008"),
    ],
    ids=[
        "not-json",
        "array",
        "splits-not-object",
        "missing",
        "not-list",
        "numbers",
        "unknown-key",
        "val-twice",
        "overlap",
    ],
)
def test_a_bad_splits_file_is_one_line_naming_it(tmp_path, text, found):
    path = tmp_path / "mine.json"
    path.write_text(text)
    with pytest.raises(FmriInputError) as error:
        load_splits(path)
    message = str(error.value)
    assert message.startswith(f"{path}: expected ") and found in message and "\n" not in message


def test_fingerprint_refuses_a_bad_splits_file_with_exit_2(tmp_path, capsys):
    manifest = cohort_with_columns(tmp_path / "cohort", {})
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": SUBJECTS[:6], "test": SUBJECTS[8:]}))
    command = ["fingerprint", "--model", tmp_path / "no-model", "--manifest", manifest, "--splits", splits]
    assert main([*map(str, command), "--output", str(tmp_path / "out"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{splits}: expected" in error and "no validation split" in error
    assert "Traceback" not in error and not (tmp_path / "out").exists()


def test_split_refuses_a_grouping_column_with_too_few_values(tmp_path, capsys):
    manifest = cohort_with_columns(tmp_path / "cohort", {"sex": lambda k: "MF"[k % 2]})
    out = tmp_path / "splits.json"
    assert main(["split", str(manifest), "--out", str(out), "--group-column", "sex"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(manifest) in error
    assert "2 distinct sex values, so validation and test would be empty" in error
    assert "at least 5 groups" in error and "families or sites" in error
    assert not out.exists()
    two_splits = ["--group-column", "sex", "--fractions", "0.5", "0.5", "0"]
    assert main(["split", str(manifest), "--out", str(out), *two_splits]) == 0  # two groups do fill two splits


def test_too_few_subjects_for_every_split_is_refused():
    with pytest.raises(FmriInputError, match=r"found 3 subjects, so test would be empty"):
        make_splits(["a", "b", "c"], seed=0)
    assert make_splits(["a", "b", "c"], fractions=(0.7, 0.3, 0.0))["test"] == []


def test_subjects_without_a_group_are_each_their_own_group_and_named(tmp_path, capsys):
    missing = {1: "n/a", 2: "n/a", 3: "n/a", 4: "NaN", 5: "n/a", 6: ""}  # "n/a" is no family, not a family of 4
    manifest = cohort_with_columns(tmp_path / "cohort", {"family_id": lambda k: missing.get(k, f"family-{k}")})
    out = tmp_path / "splits.json"
    assert main(["split", str(manifest), "--out", str(out), "--group-column", "family_id"]) == 0
    printed = capsys.readouterr().out
    assert "note: 6 subjects have no family_id value, each is its own group: sub-001, sub-002, sub-003" in printed
    splits = load_splits(out)
    assert sorted(s for names in splits.values() for s in names) == SUBJECTS  # none dropped
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [7, 2, 1]
    unknown_family = {"sub-001", "sub-002", "sub-003", "sub-005"}
    together = [
        any(unknown_family <= set(members) for members in splits_from_manifest(read_manifest(manifest), "family_id",
                                                                                seed=seed).values())
        for seed in range(10)
    ]  # fmt: skip
    assert not all(together)  # dealt one by one, not as one family "n/a"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("splits")
    manifest = cohort_with_columns(folder / "cohort", {"sex": lambda k: "MF"[k % 2]})
    convert(manifest, folder / "shards", ConvertOptions(), progress=False)
    return ShardFolder(folder / "shards")


def test_training_refuses_too_few_groups_and_unknown_subjects(shards, tmp_path):
    accelerator = Accelerator(cpu=True)
    config = RunConfig(data=str(shards.folder), output_dir=str(tmp_path / "run"), group_column="sex")
    with pytest.raises(FmriInputError, match=r"2 distinct sex values, so validation and test would be empty"):
        resolve_splits(config, shards, accelerator)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"train": SUBJECTS[:6], "val": SUBJECTS[6:8], "test": [*SUBJECTS[8:], "sub-999"]}))
    config = RunConfig(data=str(shards.folder), output_dir=str(tmp_path / "run"), splits=str(plain))
    with pytest.raises(FmriInputError, match=r"plain.json: expected only subjects of the data, found 1 others: sub-99"):
        resolve_splits(config, shards, accelerator)
    plain.write_text(json.dumps({"train": SUBJECTS[:6], "val": SUBJECTS[6:8], "test": SUBJECTS[8:]}))
    assert resolve_splits(config, shards, accelerator) == EXPECTED
    assert load_splits(tmp_path / "run" / "splits.json") == EXPECTED
