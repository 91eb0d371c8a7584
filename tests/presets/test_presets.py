"""Every shipped preset loads and validates against a small metadata CSV; bad metadata fails clearly."""

import pytest

from r2tnet_hf.errors import FmriInputError
from r2tnet_hf.evaluation import metric_path
from r2tnet_hf.presets import PRESET_NAMES, label_index, load_preset, validate_preset

EXPECTED = {
    "abide": ("DX_GROUP", "single_label_classification"),
    "adhd200": ("DX", "single_label_classification"),
    "adni": ("DX", "single_label_classification"),
    "hbn": ("Age", "regression"),
    "nkir": ("age", "regression"),
    "ukb": ("21003-2.0", "regression"),
    "hcp_aging": ("interview_age", "regression"),
}


def write_metadata(path, preset):
    """A 4-row CSV with the preset's columns: usable values, plus one missing cell."""
    columns = ["subject", *preset["target_columns"]]
    rows = []
    for index in range(4):
        cells = [f"sub-{index}"]
        for _ in preset["target_columns"]:
            if index == 3:
                cells.append("n/a")
            elif preset["problem_type"] == "regression":
                cells.append(f"{40 + 7.5 * index}")
            else:
                keys = sorted(preset["label_mapping"])
                cells.append(keys[index % len(keys)])
        rows.append(cells)
    path.write_text("\n".join(",".join(row) for row in [columns, *rows]) + "\n")
    return path


def test_the_shipped_presets_are_the_seven_cohorts():
    assert sorted(PRESET_NAMES) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preset_loads_and_validates(name, tmp_path):
    preset = load_preset(name)
    column, problem_type = EXPECTED[name]
    assert column in preset["target_columns"] and preset["problem_type"] == problem_type
    assert isinstance(preset["greater_is_better"], bool) and preset["description"]
    assert preset["metric"].startswith("val_") and metric_path(preset["metric"]).is_dir()
    assert preset["greater_is_better"] == (preset["metric"] not in ("val_mae", "val_mse"))
    assert "/" not in str(preset.get("group_column") or "")  # no paths in presets
    if problem_type != "regression":
        assert set(preset["label_mapping"].values()) <= set(preset["labels"])
    counts = validate_preset(preset, write_metadata(tmp_path / "metadata.csv", preset))
    assert counts == dict.fromkeys(preset["target_columns"], 3)
    assert load_preset(preset["source"])["name"] == preset["name"]  # by path as well


def test_a_missing_target_column_names_the_file_the_column_and_the_columns_found(tmp_path):
    metadata = tmp_path / "abide_phenotypes.csv"
    metadata.write_text("SUB_ID,SITE_ID,AGE_AT_SCAN\n50001,NYU,12.5\n")
    with pytest.raises(FmriInputError) as error:
        validate_preset("abide", metadata)
    message = str(error.value)
    assert str(metadata) in message and "'DX_GROUP'" in message and "SUB_ID, SITE_ID, AGE_AT_SCAN" in message


def test_values_must_be_usable(tmp_path):
    abide = load_preset("abide")
    assert validate_preset(abide, (["DX_GROUP"], [["1.0"], ["2"], [""]])) == {"DX_GROUP": 2}  # 1.0 means 1
    assert label_index(abide, "2.0") == 1 and label_index(abide, "3") is None
    with pytest.raises(FmriInputError, match=r"row 3 column 'DX_GROUP'.*'3'"):
        validate_preset(abide, (["DX_GROUP"], [{"DX_GROUP": "1"}, {"DX_GROUP": "3"}]))
    bad = tmp_path / "hbn.tsv"
    bad.write_text("EID\tAge\nA1\t10.2\nA2\tten\n")
    with pytest.raises(FmriInputError, match=r"hbn.tsv row 3 column 'Age'.*a number"):
        validate_preset("hbn", bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("age\nn/a\n\n")
    with pytest.raises(FmriInputError, match="at least one usable value"):
        validate_preset("nkir", empty)
    adni = load_preset("adni")
    assert label_index(adni, "Dementia") == label_index(adni, "AD") == 2


def test_custom_presets_by_path_multi_label_and_group_column(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\ntarget_columns: [adhd, anxiety]\nproblem_type: multi_label_classification\n"
        "metric: val_auroc\ngreater_is_better: true\ngroup_column: family_id\n"
    )
    preset = load_preset(path)
    assert validate_preset(preset, (["adhd", "anxiety", "family_id"], [[1, 0, "f1"], [0, 0, "f1"]])) == {
        "adhd": 2,
        "anxiety": 2,
    }
    with pytest.raises(FmriInputError, match="'family_id'"):
        validate_preset(preset, (["adhd", "anxiety"], [[1, 0]]))
    with pytest.raises(FmriInputError, match="0 or 1"):
        validate_preset(preset, (["adhd", "anxiety", "family_id"], [[2, 0, "f1"]]))
    path.write_text(
        "name: broken\ntarget_columns: [x]\nproblem_type: ranking\nmetric: val_mae\ngreater_is_better: false\n"
    )
    with pytest.raises(FmriInputError, match="problem_type"):
        load_preset(path)
    with pytest.raises(FmriInputError, match="preset YAML file or one of"):
        load_preset("abide2")
