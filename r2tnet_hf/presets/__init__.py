"""Downstream presets: which phenotype column(s) to predict for a public cohort, how, and how to score it.

A preset is a small YAML file (shipped ones: `r2tnet_hf/presets/<name>.yaml`, for `abide`, `adhd200`, `adni`, `hbn`,
`nkir`, `ukb`, `hcp_aging`) with:

- `name`, `description`;
- `target_columns`: the column(s) of the user's metadata CSV to predict, named as the cohort's public phenotype files
  name them (ABIDE `DX_GROUP`, ADHD-200 `DX`, ADNI `DX`, ...): the user's CSV must have them;
- `problem_type`: `regression`, `single_label_classification` or `multi_label_classification` (transformers'
  convention);
- `labels` (classification): the class names in class-index order, and `label_mapping`: raw cell value → class
  name (e.g. ABIDE `"1": ASD`, `"2": TDC`); multi-label targets are 0/1 columns, one per label;
- `metric` (`val_mae`, `val_balanced_accuracy`, `val_auroc`, `val_pearson_r`, ...; see `r2tnet_hf.evaluation.
  load_metric`) and `greater_is_better`;
- `subject_column` (the cohort's subject id column, to join with the manifest's `subject`) and an optional
  `group_column` (e.g. family id, for grouped splits).

No preset holds a path: the data are the user's.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from ..errors import FmriInputError

PRESETS_DIR = Path(__file__).resolve().parent
PRESET_NAMES = ("abide", "adhd200", "adni", "hbn", "hcp_aging", "nkir", "ukb")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
MISSING = {"", "n/a", "na", "nan", "none", "null", "pending"}
REQUIRED_KEYS = ("name", "target_columns", "problem_type", "metric", "greater_is_better")


def load_preset(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Load a shipped preset by name (`"abide"`, ...) or any preset YAML by path, and check its fields.

    Returns:
        `dict` with the YAML's keys; `target_columns` is always a list, `labels`/`label_mapping`/`group_column`/
        `subject_column` present (None when unset), and `source` the file it came from.

    Raises:
        `FmriInputError` naming the file for an unknown name, bad YAML or a bad field.
    """
    import yaml

    path = Path(name_or_path)
    if not path.suffix and str(name_or_path) in PRESET_NAMES:
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FmriInputError.for_source(
            name_or_path, expected=f"a preset YAML file or one of {', '.join(PRESET_NAMES)}", found="neither"
        )
    try:
        preset = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise FmriInputError.for_source(path, expected="valid YAML", found=f"{error}") from error
    if not isinstance(preset, dict):
        raise FmriInputError.for_source(path, expected="a YAML mapping", found=type(preset).__name__)
    missing = [key for key in REQUIRED_KEYS if key not in preset]
    if missing:
        raise FmriInputError.for_source(path, expected=f"keys {', '.join(REQUIRED_KEYS)}", found=f"no {missing}")
    targets = preset["target_columns"]
    preset["target_columns"] = [str(c) for c in ([targets] if isinstance(targets, str) else list(targets or []))]
    if not preset["target_columns"]:
        raise FmriInputError.for_source(path, expected="at least one target column", found="none")
    if preset["problem_type"] not in PROBLEM_TYPES:
        raise FmriInputError.for_source(
            path, expected=f"problem_type one of {', '.join(PROBLEM_TYPES)}", found=repr(preset["problem_type"])
        )
    for key in ("labels", "label_mapping", "group_column", "subject_column", "description"):
        preset.setdefault(key, None)
    if preset["label_mapping"] is not None:
        preset["label_mapping"] = {str(key): str(value) for key, value in preset["label_mapping"].items()}
    if preset["problem_type"] == "single_label_classification":
        if not preset["labels"] or not preset["label_mapping"]:
            raise FmriInputError.for_source(path, expected="labels and label_mapping for classification", found="none")
        unknown = sorted(set(preset["label_mapping"].values()) - {str(label) for label in preset["labels"]})
        if unknown:
            raise FmriInputError.for_source(
                path, expected=f"label_mapping values among labels {preset['labels']}", found=f"{unknown}"
            )
    if not isinstance(preset["greater_is_better"], bool):
        raise FmriInputError.for_source(path, expected="greater_is_better true or false", found="something else")
    from ..evaluation import metric_path

    try:
        metric_path(str(preset["metric"]))
    except ValueError as error:
        raise FmriInputError.for_source(path, expected="a shipped metric", found=f"{preset['metric']!r}") from error
    preset["source"] = str(path)
    return preset


def _read_metadata(metadata) -> tuple[str, list[str], list[dict[str, str]]]:
    """(name for messages, columns, rows as str → str) from a CSV/TSV path, a DataFrame, or (columns, rows)."""
    if isinstance(metadata, (str, os.PathLike)):
        path = Path(metadata)
        if not path.is_file():
            raise FmriInputError.for_source(path, expected="a metadata CSV/TSV file", found="no such file")
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            columns = [str(c).strip() for c in reader.fieldnames or []]
            rows = [{str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
        return str(path), columns, rows
    if hasattr(metadata, "columns") and hasattr(metadata, "to_dict"):  # a pandas DataFrame
        columns = [str(c) for c in metadata.columns]
        rows = [{str(k): "" if v is None else str(v) for k, v in row.items()} for row in metadata.to_dict("records")]
        return "<dataframe>", columns, rows
    columns, rows = metadata
    columns = [str(c) for c in columns]
    rows = [dict(zip(columns, map(str, row))) if not isinstance(row, dict) else row for row in rows]
    return "<metadata>", columns, [{str(k): "" if v is None else str(v) for k, v in row.items()} for row in rows]


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _label_key(value: str, mapping: dict[str, str]) -> str | None:
    """The mapping key a cell means: exact, or numerically equal ("1.0" for "1")."""
    if value in mapping:
        return value
    if _is_number(value):
        for key in mapping:
            if _is_number(key) and float(key) == float(value):
                return key
    return None


def validate_preset(preset: dict[str, Any] | str | os.PathLike, metadata) -> dict[str, int]:
    """Check that a metadata table can feed a preset.

    Args:
        preset: a dict from `load_preset`, or a name/path for it.
        metadata: a CSV/TSV path, a pandas DataFrame, or `(columns, rows)` with rows as dicts or sequences.

    Checks that every target column (and the `group_column`, if set) exists; that regression targets are numeric;
    that classification cells are keys of `label_mapping`; that multi-label cells are 0/1. Missing cells (empty,
    `n/a`, `nan`, `pending`) are allowed, but every target must have at least one usable value.

    Returns:
        `dict`: target column → number of usable rows.

    Raises:
        `FmriInputError` naming the metadata file and the missing column with the columns found, or the first bad
        cell with its row.
    """
    if not isinstance(preset, dict):
        preset = load_preset(preset)
    name, columns, rows = _read_metadata(metadata)
    wanted = list(preset["target_columns"]) + ([preset["group_column"]] if preset.get("group_column") else [])
    for column in wanted:
        if column not in columns:
            raise FmriInputError.for_source(
                name,
                expected=f"column {column!r} for preset {preset['name']!r}",
                found=f"columns {', '.join(columns) or 'none'}",
                hint="rename your column, or copy the preset YAML and set target_columns",
            )
    usable = {}
    for column in preset["target_columns"]:
        count = 0
        for index, row in enumerate(rows):
            value = row.get(column, "").strip()
            if value.lower() in MISSING:
                continue
            where = f"{name} row {index + 2} column {column!r}"
            if preset["problem_type"] == "regression":
                if not _is_number(value) or not float(value) == float(value):
                    raise FmriInputError.for_source(where, expected="a number (regression target)", found=repr(value))
            elif preset["problem_type"] == "single_label_classification":
                if _label_key(value, preset["label_mapping"]) is None:
                    raise FmriInputError.for_source(
                        where, expected=f"one of {sorted(preset['label_mapping'])}", found=repr(value)
                    )
            elif not _is_number(value) or float(value) not in (0.0, 1.0):
                raise FmriInputError.for_source(where, expected="0 or 1 (multi-label target)", found=repr(value))
            count += 1
        if count == 0:
            raise FmriInputError.for_source(
                name, expected=f"at least one usable value in column {column!r}", found=f"none in {len(rows)} rows"
            )
        usable[column] = count
    return usable


def label_index(preset: dict[str, Any], value) -> int | None:
    """The class index of a raw cell for a single-label preset (None for a missing or unknown cell)."""
    key = _label_key(str(value).strip(), preset["label_mapping"] or {})
    return None if key is None else [str(label) for label in preset["labels"]].index(preset["label_mapping"][key])


__all__ = ["PRESET_NAMES", "label_index", "load_preset", "validate_preset"]
