"""Subject-level train/validation/test splits: never by file, optionally by a group such as family."""

from __future__ import annotations

import json
import math
import numbers
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import FmriInputError
from ..utils import atomic_write_text
from .manifest import MISSING, Manifest

SPLIT_NAMES = ("train", "validation", "test")
SPLIT_ALIASES = {"val": "validation"}
SPLITS_FILE_FORMAT = (
    'a JSON object {"train": [...], "validation": [...], "test": [...]} of subject names, or that object under '
    '"splits" (what `r2tnet split` and a training run write)'
)
GROUPING_HINT = "group by a column with many values that identifies families or sites, e.g. family_id"


def make_splits(
    subjects,
    groups: dict[str, str | None] | None = None,
    fractions=(0.7, 0.15, 0.15),
    seed: int = 0,
    *,
    source: str | os.PathLike | None = None,
    group_column: str | None = None,
) -> dict[str, list[str]]:
    """Assign whole subjects (or whole groups of subjects) to train/validation/test, deterministically from `seed`.

    Groups (e.g. families, so that relatives never straddle splits) are shuffled and dealt, largest deficit first, to
    the split furthest below its target number of subjects. Every subject lands in exactly one split; a subject
    without a group (missing from `groups`, or `None`) is a group of its own.

    Raises:
        `FmriInputError` (naming `source` and `group_column`): a split with a fraction above 0 would be empty, because
        there are too few subjects or groups.
    """
    subjects = sorted(set(subjects))
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    units = _units(subjects, groups or {})
    names = sorted(units)
    order = np.random.default_rng(seed).permutation(len(names))
    dealt = _deal([len(units[names[index]]) for index in order], fractions)
    splits = {name: [] for name in SPLIT_NAMES}
    for index, choice in zip(order, dealt):
        splits[SPLIT_NAMES[choice]].extend(units[names[index]])
    result = {name: sorted(values) for name, values in splits.items()}
    _check_filled(result, fractions, groups, group_column, source)
    check_disjoint(result)
    return result


def _units(subjects: list[str], groups: dict[str, str | None]) -> dict[str, list[str]]:
    """What is dealt: the members of each group, and each subject without a group alone."""
    members = defaultdict(list)
    for subject in subjects:
        members[groups.get(subject) or f"subject:{subject}"].append(subject)
    return members


def _deal(sizes: list[int], fractions) -> list[int]:
    """The split (0, 1, 2) each unit goes to, in order: the one furthest below its target number of subjects."""
    targets = np.asarray(fractions, dtype=float) * sum(sizes)
    counts = np.zeros(3)
    choices = []
    for size in sizes:
        choice = int(np.argmax(targets - counts))
        counts[choice] += size
        choices.append(choice)
    return choices


def units_needed(fractions) -> int:
    """The fewest equal-sized groups (or subjects) that leave no split with a fraction above 0 empty."""
    wanted = {index for index, fraction in enumerate(fractions) if fraction > 0}
    for count in range(len(wanted), 1001):
        if wanted <= set(_deal([1] * count, fractions)):
            return count
    return math.ceil(1 / min(fraction for fraction in fractions if fraction > 0))


def _check_filled(splits, fractions, groups, group_column, source) -> None:
    """Refuse splits where one with a fraction above 0 came out empty, saying how many groups there are and how many
    are needed."""
    empty = [name for name, fraction in zip(SPLIT_NAMES, fractions) if fraction > 0 and not splits[name]]
    if not empty:
        return
    wanted = [name for name, fraction in zip(SPLIT_NAMES, fractions) if fraction > 0]
    subjects = [subject for members in splits.values() for subject in members]
    expected = f"non-empty {', '.join(wanted)} at fractions {' '.join(f'{f:g}' for f in fractions)}"
    if not groups:
        found, hint = f"{len(subjects)} subjects", "add subjects, or set that split's fraction to 0"
        expected += f" (at least {units_needed(fractions)} subjects)"
    else:
        values = {groups[s] for s in subjects if groups.get(s)}
        alone = sum(not groups.get(s) for s in subjects)
        found = f"{len(values)} distinct {group_column or 'group'} values" + (
            f" and {alone} subjects without one (each its own group)" if alone else ""
        )
        expected += f" (at least {units_needed(fractions)} groups of similar size)"
        hint = GROUPING_HINT
    raise FmriInputError.for_source(
        source if source is not None else "subjects",
        expected=expected,
        found=f"{found}, so {' and '.join(empty)} would be empty",
        hint=hint,
    )


def group_value(value) -> str | None:
    """A subject's group as text, or `None` where the value is missing (empty, n/a, NaN, None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return None if text.lower() in MISSING else text


def manifest_groups(manifest: Manifest, group_column: str) -> dict[str, str | None]:
    """Each subject's value in the phenotype column `group_column` (`None` where missing); one value per subject."""
    if group_column not in manifest.phenotype_columns:
        raise FmriInputError.for_source(
            manifest.source, expected=f"a {group_column!r} column", found=f"columns {manifest.phenotype_columns}"
        )
    groups: dict[str, str | None] = {}
    for record in manifest.records:
        value = group_value(record.phenotypes.get(group_column))
        if groups.setdefault(record.subject, value) != value:
            raise FmriInputError.for_source(
                manifest.source,
                expected=f"one {group_column} per subject",
                found=f"{record.subject} in {groups[record.subject]!r} and {value!r}",
            )
    return groups


def ungrouped_note(groups: dict[str, str | None] | None, group_column: str | None) -> str | None:
    """A line naming the subjects without a `group_column` value (each is its own group), or `None`."""
    alone = sorted(subject for subject, group in (groups or {}).items() if group is None)
    if not alone:
        return None
    shown = ", ".join(alone[:5]) + (", ..." if len(alone) > 5 else "")
    return f"note: {len(alone)} subjects have no {group_column} value, each is its own group: {shown}"


def splits_from_manifest(
    manifest: Manifest, group_column: str | None = None, fractions=(0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[str]]:
    """`make_splits` over a manifest's subjects; `group_column` names a phenotype column such as `family_id`."""
    groups = manifest_groups(manifest, group_column) if group_column is not None else None
    return make_splits(manifest.subjects, groups, fractions, seed, source=manifest.source, group_column=group_column)


def check_disjoint(splits: dict[str, list[str]]) -> None:
    """Refuse splits that share a subject."""
    names = list(splits)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = sorted(set(splits[first]) & set(splits[second]))
            if shared:
                raise ValueError(
                    f"splits {first!r} and {second!r} share {len(shared)} subjects: {', '.join(shared[:10])}"
                )


def save_splits(splits: dict[str, list[str]], path: str | os.PathLike, seed: int | None = None) -> None:
    check_disjoint(splits)
    atomic_write_text(path, json.dumps({"seed": seed, "splits": splits}, indent=2) + "\n")


def load_splits(path: str | os.PathLike, subjects=None) -> dict[str, list[str]]:
    """Read a splits file, the one reader of them: what `r2tnet split` and a training run write (`{"seed": ...,
    "splits": {...}}`), or a plain `{"train": [...], "validation": [...], "test": [...]}` (`"val"` is read as
    `"validation"`).

    Args:
        path (`str` or `os.PathLike`): the JSON file.
        subjects (iterable of `str`, *optional*): when given, every subject in the file must be one of these.

    Raises:
        `FmriInputError`, one line naming the file: not readable or not JSON, not an object, a split missing, unknown
        or not a list, a subject name that is not a string, splits that share a subject, an unknown subject.
    """
    path = Path(path)
    loaded = _read_json(path)
    splits = loaded.get("splits", loaded) if isinstance(loaded, dict) else loaded
    if not isinstance(splits, dict):
        raise FmriInputError.for_source(path, expected=SPLITS_FILE_FORMAT, found=f"a JSON {_json_type(splits)}")
    result = {name: _subject_list(path, name, value) for name, value in _named_splits(path, splits).items()}
    try:
        check_disjoint(result)
    except ValueError as error:
        raise FmriInputError.for_source(path, expected="disjoint splits", found=str(error)) from None
    if subjects is not None:
        unknown = sorted({s for names in result.values() for s in names} - set(subjects))
        if unknown:
            raise FmriInputError.for_source(
                path, expected="only subjects of the data", found=f"{len(unknown)} others: {', '.join(unknown[:5])}"
            )
    return result


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FmriInputError.for_source(path, expected="a splits JSON file", found="no such file") from None
    except json.JSONDecodeError as error:
        found = f"invalid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        raise FmriInputError.for_source(path, expected=SPLITS_FILE_FORMAT, found=found) from None
    except (OSError, UnicodeDecodeError) as error:
        raise FmriInputError.for_source(
            path, expected="a readable UTF-8 JSON file", found=type(error).__name__
        ) from None


def _named_splits(path: Path, splits: dict) -> dict:
    """The file's splits under their canonical names, in `SPLIT_NAMES` order; every one present, no other key."""
    named = {}
    for key, value in splits.items():
        name = SPLIT_ALIASES.get(key, key)
        if name not in SPLIT_NAMES:
            raise FmriInputError.for_source(
                path, expected=f"only the keys {', '.join(SPLIT_NAMES)} ('val' for validation)", found=f"{key!r}"
            )
        if name in named:
            raise FmriInputError.for_source(path, expected=f"one {name} split", found="both 'val' and 'validation'")
        named[name] = value
    missing = [name for name in SPLIT_NAMES if name not in named]
    if missing:
        raise FmriInputError.for_source(
            path,
            expected=SPLITS_FILE_FORMAT,
            found=f"no {' or '.join(missing)} split (keys {sorted(splits)})",
            hint=f'write an empty list for a split you do not use, e.g. "{missing[0]}": []',
        )
    return {name: named[name] for name in SPLIT_NAMES}


def _subject_list(path: Path, name: str, value) -> list[str]:
    if not isinstance(value, list):
        raise FmriInputError.for_source(
            path, expected=f"{name!r} to be a list of subject names", found=f"a JSON {_json_type(value)}"
        )
    for subject in value:
        if not isinstance(subject, str):
            raise FmriInputError.for_source(
                path,
                expected=f"{name!r} to list subject names as strings",
                found=f"{subject!r} (a JSON {_json_type(subject)})",
                hint='quote subject names as in the manifest, e.g. "100307"',
            )
    return list(value)


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, numbers.Number):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}.get(type(value), type(value).__name__)
