"""Subject-level train/validation/test splits: never by file, optionally by a group such as family."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import FmriInputError
from ..utils import atomic_write_text
from .manifest import Manifest

SPLIT_NAMES = ("train", "validation", "test")


def make_splits(
    subjects, groups: dict[str, str] | None = None, fractions=(0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[str]]:
    """Assign whole subjects (or whole groups of subjects) to train/validation/test, deterministically from `seed`.

    Groups (e.g. families, so that relatives never straddle splits) are shuffled and dealt, largest deficit first, to
    the split furthest below its target number of subjects. Every subject lands in exactly one split.
    """
    subjects = sorted(set(subjects))
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    groups = groups or {}
    members = defaultdict(list)
    for subject in subjects:
        members[groups.get(subject) or f"subject:{subject}"].append(subject)
    units = sorted(members)
    order = np.random.default_rng(seed).permutation(len(units))
    targets = np.asarray(fractions) * len(subjects)
    counts = np.zeros(3)
    splits = {name: [] for name in SPLIT_NAMES}
    for index in order:
        unit = members[units[index]]
        choice = int(np.argmax(targets - counts))
        splits[SPLIT_NAMES[choice]].extend(unit)
        counts[choice] += len(unit)
    result = {name: sorted(values) for name, values in splits.items()}
    check_disjoint(result)
    return result


def splits_from_manifest(
    manifest: Manifest, group_column: str | None = None, fractions=(0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[str]]:
    """`make_splits` over a manifest's subjects; `group_column` names a phenotype column such as `family_id`."""
    groups = None
    if group_column is not None:
        if group_column not in manifest.phenotype_columns:
            raise FmriInputError.for_source(
                manifest.source, expected=f"a {group_column!r} column", found=f"columns {manifest.phenotype_columns}"
            )
        groups = {}
        for record in manifest.records:
            value = record.phenotypes.get(group_column, "")
            if groups.setdefault(record.subject, value) != value:
                raise FmriInputError.for_source(
                    manifest.source,
                    expected=f"one {group_column} per subject",
                    found=f"{record.subject} in {groups[record.subject]!r} and {value!r}",
                )
    return make_splits(manifest.subjects, groups, fractions, seed)


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


def load_splits(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a splits file: what `save_splits` writes (`{"seed": ..., "splits": {...}}`) or a plain
    `{"train": [...], "validation": [...], "test": [...]}`. Subject names are read as strings; a missing split is
    empty. Malformed or overlapping splits raise `FmriInputError` naming the file."""
    path = Path(path)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FmriInputError.for_source(path, expected="a splits JSON file", found=f"{type(error).__name__}") from None
    splits = loaded.get("splits", loaded) if isinstance(loaded, dict) else None
    if not isinstance(splits, dict) or not set(splits) & set(SPLIT_NAMES):
        found = sorted(splits) if isinstance(splits, dict) else type(loaded).__name__
        raise FmriInputError.for_source(
            path, expected=f"lists of subjects under {', '.join(SPLIT_NAMES)} (or under 'splits')", found=f"{found}"
        )
    unknown = sorted(set(splits) - set(SPLIT_NAMES))
    if unknown or not all(isinstance(splits.get(name, []), list) for name in SPLIT_NAMES):
        raise FmriInputError.for_source(
            path, expected=f"only {', '.join(SPLIT_NAMES)}, each a list of subjects", found=f"keys {sorted(splits)}"
        )
    result = {name: [str(subject) for subject in splits.get(name, [])] for name in SPLIT_NAMES}
    try:
        check_disjoint(result)
    except ValueError as error:
        raise FmriInputError.for_source(path, expected="disjoint splits", found=str(error)) from None
    return result
