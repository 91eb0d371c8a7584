import json
from pathlib import Path

import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from r2tnet_hf.hub import RunRecord, build_model_card, check_card_offline, load_model, load_processor, save_with_card
from r2tnet_hf.hub.cards import CITATIONS, HeldOutCohort, TrainingData, template_text

from .conftest import make_run, tiny_config


def metadata(card) -> dict:
    return check_card_offline(str(card))


def test_pretrained_card_fields_and_metrics(pretrain_run):
    model, processor = load_model(pretrain_run / "best"), load_processor(pretrain_run / "best")
    card = build_model_card(model, processor, RunRecord.from_run_dir(pretrain_run), repo_id="lab/tiny")
    meta = metadata(card)
    assert meta["library_name"] == "r2tnet-hf" and meta["license"] == "apache-2.0"
    assert meta["tags"][:4] == ["fmri", "neuroscience", "r2tnet", "roi_transformer"]
    assert meta["datasets"] == ["hcp_synthetic"] and meta["pipeline_tag"] == "feature-extraction"
    assert "base_model" not in meta  # not a fine-tune
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "tiny"
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in results} == {
        ("validation", "fingerprint_rank1"): 0.86,
        ("validation", "fc_rank1"): 0.93,
        ("validation", "loss"): 1.2,
    }
    text = str(card)
    for expected in (
        "synthetic16",
        model.config.backbone_config.model_type,
        f"{model.num_parameters():,}",
        "`R2TNetModel`",
    ):
        assert expected in text
    assert "import r2tnet_hf" in text and 'AutoModel.from_pretrained("lab/tiny")' in text
    assert "MnemoDyn" in text and "R2T-Net" in text and "doi" not in text.lower()
    assert "cross_modality" in text and "Checkpoint selected by `val_fingerprint_rank1` (higher is better)" in text
    assert "| data (shards) | `hcp_synthetic` |" in text and "/data/shards" not in text  # names, not local paths
    assert "| objective |" not in text and "| batch size |" not in text  # fields of other recipes stay out


def test_finetune_card_has_base_model_test_and_fc_baseline(finetune_run):
    card = build_model_card(
        load_model(finetune_run / "best"),
        load_processor(finetune_run / "best"),
        RunRecord.from_run_dir(finetune_run),
        license="cc-by-nc-4.0",
    )
    meta = metadata(card)
    assert meta["base_model"] == "org/r2tnet-tiny" and meta["license"] == "cc-by-nc-4.0"
    _, results = model_index_to_eval_results(meta["model-index"])
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in results} == {
        ("validation", "pearson_r"): 0.4,
        ("validation", "mae"): 3.1,
        ("test", "pearson_r"): 0.31,
        ("test", "mae"): 4.2,
        ("test", "fc_baseline_pearson_r"): 0.2,
    }
    assert all(r.task_type == "tabular-regression" for r in results)
    assert "predicts `score`" in str(card) and "R2TNetForPhenotypePrediction" in str(card)
    assert "| batch size | 8 |" in str(card) and "| positive pairs |" not in str(card)


def test_unknown_fields_are_omitted_not_placeholders(tmp_path):
    from r2tnet_hf import R2TNetModel

    model = R2TNetModel(tiny_config())
    card = build_model_card(model)  # no run, no processor, no repo id
    meta = metadata(card)
    assert set(meta) == {"library_name", "license", "tags", "pipeline_tag"}
    text = str(card)
    assert "## Training" not in text and "## Evaluation" not in text and "## Preprocessing" not in text
    for placeholder in ("None", "TODO", "[More Information Needed]", "unknown"):
        assert placeholder not in text.split("## Citation")[0]


def test_run_without_dataset_gets_no_model_index_but_a_results_table(tmp_path):
    run = make_run(tmp_path / "run", config_extra={"data": None})
    card = build_model_card(load_model(run / "best"), None, RunRecord.from_run_dir(run))
    meta = metadata(card)
    assert "model-index" not in meta and "datasets" not in meta
    assert "| validation | fingerprint_rank1 | 0.86 |" in str(card)


def test_save_with_card_round_trips_and_loads_offline(pretrain_run, tmp_path):
    model, processor = load_model(pretrain_run / "best"), load_processor(pretrain_run / "best")
    folder = save_with_card(model, processor, tmp_path / "out", run_dir=pretrain_run)
    loaded = ModelCard.load(folder / "README.md")
    assert loaded.data.library_name == "r2tnet-hf"
    assert [r.metric_value for r in loaded.data.eval_results] == [0.86, 0.93, 1.2]
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]


def test_offline_check_rejects_broken_cards():
    import pytest

    for bad in ("no metadata", "---\nlicense: [unclosed\n---\n", "---\n- a list\n---\n", "---\nlicense: mit\n---\n"):
        with pytest.raises(ValueError):
            check_card_offline(bad)


def test_template_ships_in_the_package_and_citations_parse():
    assert template_text().startswith("---\n{{ card_data }}\n---")
    assert CITATIONS.count("@") == 2 and "openreview.net/forum?id=zexMILcQOV" in CITATIONS
    assert yaml.safe_load("a: 1") == {"a": 1}


def test_readme_example_card_validates_offline():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- example-card:start -->\n````markdown\n", 1)[1].split(
        "\n````\n<!-- example-card:end -->"
    )[0]
    meta = check_card_offline(block + "\n")
    assert meta["library_name"] == "r2tnet-hf" and "fmri" in meta["tags"]
    _, results = model_index_to_eval_results(meta["model-index"])
    types = {r.metric_type for r in results}
    assert {"fingerprint_rank1", "fc_rank1", "loss"} <= types  # the demo's validation metrics, model beside FC
    assert not types & {"subjects", "subjects_paired", "rows"}  # counts are not metrics


def _processor_without_atlas():
    from r2tnet_hf import FmriProcessor

    from .conftest import LABELS, NUM_ROIS

    return FmriProcessor(num_rois=NUM_ROIS, roi_labels=LABELS)


def test_card_without_an_atlas_says_what_the_input_must_be(pretrain_run):
    card = str(build_model_card(load_model(pretrain_run / "best"), _processor_without_atlas()))
    unnamed = "16 ROI series whose parcellation is not recorded; inputs must have the same ROIs in the same order"
    assert f"| atlas | none: the input is {unnamed}" in card
    limitations = card.split("## Intended use and limitations")[1]
    assert f"The input is {unnamed}" in limitations and "atlas above" not in card
    assert "| window | none: a whole scan is one input |" in card
    # with an atlas, the card names it (and says nothing about an unrecorded parcellation)
    card = str(build_model_card(load_model(pretrain_run / "best"), load_processor(pretrain_run / "best")))
    assert "It expects the `synthetic16` atlas" in card and "not recorded" not in card


def test_card_says_when_a_run_has_no_test_figures(pretrain_run, finetune_run, tmp_path):
    card = str(build_model_card(load_model(pretrain_run / "best"), None, RunRecord.from_run_dir(pretrain_run)))
    assert "No held-out test figures were recorded for this run" in card.split("## Evaluation")[1]
    card = str(build_model_card(load_model(finetune_run / "best"), None, RunRecord.from_run_dir(finetune_run)))
    assert "| test | pearson_r | 0.31 |" in card and "No held-out test figures" not in card
    empty = make_run(tmp_path / "empty")
    (empty / "best" / "eval_results.json").unlink()
    card = str(build_model_card(load_model(empty / "best"), None, RunRecord.from_run_dir(empty)))
    assert "## Evaluation\n\nThis run recorded no evaluation figures." in card


def test_card_states_the_training_data_and_windows(tmp_path):
    run = make_run(tmp_path / "run", config_extra={"window_length": 256, "min_window_length": 32})
    subjects = [f"sub-{k:02d}" for k in range(10)]
    splits = {"train": subjects[:6], "validation": subjects[6:8], "test": subjects[8:]}
    (run / "splits.json").write_text(json.dumps({"seed": 0, "splits": splits}))
    card = str(build_model_card(load_model(run / "best"), None, RunRecord.from_run_dir(run)))
    data = card.split("## Training data")[1].split("## Training\n")[0]
    assert "| dataset | `hcp_synthetic` |" in data
    assert "| people | 10: 6 training, 2 validation (they chose the checkpoint), 2 test (never trained on) |" in data
    assert "| data |" not in data  # real or simulated: not recorded by a training run, so not claimed
    assert "| training windows | random crops of 32 to 256 frames (at most the scan's length) |" in card
    simulated = TrainingData(name="synthetic", simulated=True, description="a generator", subjects={"train": 4})
    card = str(build_model_card(load_model(run / "best"), None, RunRecord.from_run_dir(run), training_data=simulated))
    assert "| data | simulated people (synthetic data): a generator |" in card
    assert "| people | 4: 4 training, 0 validation (they chose the checkpoint), 0 test (never trained on) |" in card


def _rank1(value: float, spread: float = 0.0) -> dict:
    return {"rank1": value, "rank1_std": spread}


def _report(pairing: str, sessions: list, subjects: int) -> dict:
    def entry(model, strongest, tangent, raw):
        return {"model": model, "strongest": strongest, "best_on_test": "raw" if raw["rank1"] > tangent["rank1"]
                else strongest, "baselines": {"tangent": tangent, "raw": raw}}  # fmt: skip

    return {
        "pairing": pairing,
        "sessions": sessions,
        "subjects": subjects,
        "lengths": {
            "full": entry(_rank1(1.0), "tangent", _rank1(0.875, 0.125), _rank1(0.75)),
            "50": entry(_rank1(0.958, 0.042), "tangent", _rank1(0.792, 0.042), _rank1(0.9, 0.1)),
        },
    }


def test_held_out_cohorts_are_shown_beside_the_strongest_baseline_and_raw_fc(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "test_results.json").write_text(json.dumps({"metrics": {
        "test_subjects_paired": 8, "test_fingerprint_rank1": 1.0, "test_baseline_rank1": 1.0,
        "test_baseline": "tangent", "test_fc_rank1": 0.9,
    }}))  # fmt: skip
    cohorts = [
        HeldOutCohort("Real task fMRI (connattractor)", _report("session", ["run-01", "run-03"], 8), "Real people."),
        HeldOutCohort(
            "Synthetic rest and task (simulated people)",
            _report("modality", ["rest", "task"], 4),
            "Simulated people.",
            notes=["A probe line."],
        ),
    ]
    card = str(build_model_card(load_model(run / "best"), None, RunRecord.from_run_dir(run), held_out=cohorts))
    evaluation = card.split("## Evaluation")[1].split("## Intended use")[0]
    task, synthetic = evaluation.split("### ")[1:3]
    assert task.startswith("Real task fMRI (connattractor)\n\nReal people. 8 test subjects never trained on")
    assert "between sessions (run-01, run-03)" in task
    assert "| scans | R2T-Net | strongest classical baseline (chosen on validation) | raw FC |" in task
    assert "| whole scans | 1.000 ± 0.000 | `tangent` 0.875 ± 0.125 | 0.750 ± 0.000 |" in task
    assert (
        "| 50-frame segments | 0.958 ± 0.042 | `tangent` 0.792 ± 0.042 (best on test in hindsight: `raw` 0.900 ± 0.100)"
        " | 0.900 ± 0.100 |" in task
    )
    assert synthetic.startswith("Synthetic rest and task (simulated people)\n\nSimulated people. 4 test subjects")
    assert "between rest and task" in synthetic and "\nA probe line.\n" in synthetic
    # the run's own held-out summary gives way to the cohorts; its recorded figures stay in the table
    assert "On test subjects never trained on (8 subjects)" not in evaluation
    assert "| test | fingerprint_rank1 | 1 |" in evaluation and "No held-out test figures" not in evaluation
    check_card_offline(card)
