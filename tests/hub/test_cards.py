from pathlib import Path

import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from r2tnet_hf.hub import RunRecord, build_model_card, check_card_offline, load_model, load_processor, save_with_card
from r2tnet_hf.hub.cards import CITATIONS, template_text

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
