"""Model cards for r2tnet_hf models, rendered from the Jinja template in the repository's top-level `model_cards/`
folder, which ships inside the package as `r2tnet_hf.model_cards` (package data, read with `importlib.resources`).

`build_model_card(model, processor, run=...)` fills `huggingface_hub.ModelCardData` (library, license, tags, datasets,
base model, `model-index` eval results) and renders the template with `ModelCard.from_template`. A field that is not
known is left out of the card, never filled with a placeholder; a run without held-out test figures says so.
`check_card_offline(card)` is the offline stand-in for `ModelCard.validate()` (which needs the Hub).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from ..errors import FmriInputError
from ..evaluation.fingerprint_scans import comparison_rows, rank1_text

LIBRARY_NAME = "r2tnet-hf"
DEFAULT_LICENSE = "apache-2.0"
TEMPLATE_PACKAGE = "r2tnet_hf.model_cards"
TEMPLATE_NAME = "r2tnet_model_card.md"
SPLIT_PREFIXES = {"val_": "validation", "eval_": "validation", "test_": "test"}

# Only what could be checked (OpenReview page and the authors' code repository). No DOI or author list was verified
# for either work, so none is given.
CITATIONS = """@misc{r2tnet,
  title = {{R2T-Net}: rest-to-task brain signatures from {fMRI} with contrastive learning},
  note = {Software framework; no peer-reviewed publication verified}
}

@inproceedings{mnemodyn2026,
  title = {{MnemoDyn}: Learning Resting State Dynamics from {40K} {fMRI} Sequences},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2026},
  url = {https://openreview.net/forum?id=zexMILcQOV}
}"""


@dataclass
class RunRecord:
    """What a training run folder says about a model: its resolved config and its recorded metrics.

    Every field may be missing; the card leaves out what is not known.
    """

    config: dict = field(default_factory=dict)
    eval_results: dict = field(default_factory=dict)
    test_results: dict = field(default_factory=dict)
    splits: dict = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike | None, candidate: str | os.PathLike | None = None) -> RunRecord:
        """Read `run_config.yaml`, `<candidate>/eval_results.json`, `test_results.json` and `splits.json` of a run
        folder."""
        if run_dir is None:
            return cls()
        run_dir = Path(run_dir)
        config = read_yaml(run_dir / "run_config.yaml")
        candidate = Path(candidate) if candidate is not None else run_dir / "best"
        return cls(
            config=config,
            eval_results=read_json(candidate / "eval_results.json"),
            test_results=read_json(run_dir / "test_results.json"),
            splits=read_splits(run_dir / "splits.json"),
            source=run_dir,
        )


@dataclass
class TrainingData:
    """Who a model was trained on, as its card states it; what is not known stays `None` and off the card.

    Args:
        name (`str`, *optional*): the dataset's name (the run's `dataset_name`, else its shards folder's name).
        simulated (`bool`, *optional*): `True` for simulated people (synthetic data), `False` for real fMRI.
        description (`str`, *optional*): what the data are, in a sentence.
        subjects (`dict[str, int]`): people per split (`train`, `validation`, `test`).
    """

    name: str | None = None
    simulated: bool | None = None
    description: str | None = None
    subjects: dict = field(default_factory=dict)

    @classmethod
    def from_run(cls, run: RunRecord) -> TrainingData:
        """The dataset's name and the people per split that a run folder records."""
        return cls(name=_dataset(run), subjects={split: len(names) for split, names in run.splits.items()})


@dataclass
class HeldOutCohort:
    """One cohort's identification of test subjects never trained on, beside the baselines, for the Evaluation section.

    Args:
        title (`str`): the cohort in words, e.g. `"Real task fMRI (connattractor)"`.
        report (`dict`): what `r2tnet_hf.evaluation.fingerprint_scans.run_fingerprint_evaluation` returned for it,
            with splits (so that the strongest baseline was fitted on training subjects and chosen on validation).
        about (`str`): whether the people are real or simulated, and which model was scored.
        notes (`list[str]`): further lines, e.g. a phenotype probe on the same test subjects.
    """

    title: str
    report: dict
    about: str
    notes: list = field(default_factory=list)


def _read_mapping(path: Path, parse, error: type[Exception], kind: str) -> dict:
    """`parse` of a file's text when it is a mapping; `{}` when the file is missing or holds something else."""
    if not path.is_file():
        return {}
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except error as caught:
        raise FmriInputError.for_source(path, expected=f"valid {kind}", found=f"a parse error ({caught})") from caught
    return data if isinstance(data, dict) else {}


def read_yaml(path: Path) -> dict:
    return _read_mapping(path, yaml.safe_load, yaml.YAMLError, "YAML")


def read_json(path: Path) -> dict:
    return _read_mapping(path, json.loads, json.JSONDecodeError, "JSON")


def read_splits(path: Path) -> dict:
    """`{split: [subjects]}` of a run's `splits.json`; empty when the run has none."""
    from ..data.splits import load_splits

    return load_splits(path) if path.is_file() else {}


def template_text(name: str = TEMPLATE_NAME) -> str:
    """A card template, read with `importlib.resources` from `r2tnet_hf.model_cards` (package data)."""
    try:
        return resources.files(TEMPLATE_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise FileNotFoundError(
            f"{TEMPLATE_PACKAGE}/{name}: expected the model-card template shipped with the package, found "
            f"{type(error).__name__} ({error}); reinstall r2tnet-hf (`pip install -e .` in a checkout)"
        ) from None


def split_metric(key: str) -> tuple[str, str | None]:
    """`"val_pearson_r"` → `("pearson_r", "validation")`; a key without a known prefix has no split."""
    for prefix, split in SPLIT_PREFIXES.items():
        if key.startswith(prefix):
            return key[len(prefix) :], split
    return key, None


def _numeric(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


# The positive pairs of each R2T-Net recipe, in words (the card's summary).
POSITIVES_TEXT = {
    "cross_modality": "rest and task scans of one person",
    "cross_session": "two sessions (or runs) of one person",
    "same_scan": "two crops of one scan",
}

# Counts the training loop records beside its metrics (how many subjects or rows were scored): not metrics.
COUNT_METRICS = ("subjects", "subjects_paired", "rows", "missing_targets")


def _shown(metric: str) -> bool:
    """Metrics worth a row on the card: not counts, not the spread over session pairs (`*_std`)."""
    return metric not in COUNT_METRICS and not metric.endswith("_std")


def recorded_metrics(run: RunRecord) -> list[tuple[str, str, float, bool]]:
    """`(split, metric, value, is_fc_baseline)` for every finite metric the run recorded, validation first (counts
    such as `val_subjects` are left out)."""
    rows = []
    default_split = run.eval_results.get("split") or "validation"
    for key, value in (run.eval_results.get("metrics") or {}).items():
        metric, split = split_metric(key)
        if (number := _numeric(value)) is not None and _shown(metric):
            rows.append((split or default_split, metric, number, False))
    for key, value in (run.test_results.get("metrics") or {}).items():
        metric, split = split_metric(key)
        if (number := _numeric(value)) is not None and _shown(metric):
            rows.append((split or "test", metric, number, False))
    for key, value in (run.test_results.get("fc_baseline") or {}).items():
        metric, split = split_metric(key)
        if (number := _numeric(value)) is not None:
            rows.append((split or "test", metric, number, True))
    return rows


def _headline(run: RunRecord) -> str | None:
    """The held-out result in words, beside the strongest classical baseline and raw FC, when the run has one."""
    metrics = run.test_results.get("metrics") or {}
    lines = []
    subjects = metrics.get("test_subjects_paired")
    for infix, label in (("", "whole scans"), ("segment_", "segments")):
        model = _numeric(metrics.get(f"test_fingerprint_{infix}rank1"))
        baseline = _numeric(metrics.get(f"test_baseline_{infix}rank1"))
        name = metrics.get(f"test_{infix}baseline")
        raw = _numeric(metrics.get(f"test_fc_{infix}rank1"))
        if model is not None and baseline is not None and name:
            length = run.config.get("validation_segment_length") if infix else None
            what = f"{length}-frame segments" if length else label
            verdict = "ahead of" if model > baseline else ("level with" if model == baseline else "behind")
            line = (
                f"- {what}: the model {_rate(model)}, {verdict} the strongest classical baseline (`{name}` FC, "
                f"fitted on the training subjects and chosen on validation) at {_rate(baseline)}; raw FC "
                f"{_rate(raw) if raw is not None else 'n/a'}"
            )
            hindsight = metrics.get(f"test_{infix}hindsight_baseline")
            if hindsight and hindsight != name:
                line += f"; the best baseline on these test subjects, in hindsight, `{hindsight}` FC " + _rate(
                    metrics[f"test_hindsight_{infix}rank1"]
                )
            lines.append(line + ".")
    found = run.test_results.get("baselines") or {}
    model_r = _numeric(metrics.get("test_pearson_r"))
    if found.get("strongest") and model_r is not None:
        lines.append(
            f"- test Pearson r {_format(model_r)}, the strongest baseline (ridge on `{found['strongest']}` FC) "
            f"{_format(found['test_pearson_r'])}, ridge on raw FC {_format(found['raw_test_pearson_r'])}."
        )
    if not lines:
        return None
    intro = f"On test subjects never trained on{f' ({subjects} subjects)' if subjects else ''}"
    if metrics.get("test_fingerprint_rank1") is not None:
        intro += ", Rank-1 identification between every pair of sessions"
    return "\n".join([intro + ":", *lines])


def _is_finetune(model, run: RunRecord) -> bool:
    task = run.config.get("task")
    if task in ("pretrain", "finetune"):
        return task == "finetune"
    return any(arch.endswith("ForPhenotypePrediction") for arch in (model.config.architectures or []))


def _task_type(model, finetune: bool) -> str:
    if not finetune:
        return "feature-extraction"
    problem_type = getattr(model.config, "problem_type", None)
    return "tabular-regression" if problem_type in (None, "regression") else "tabular-classification"


def _dataset(run: RunRecord) -> str | None:
    """The training data's name: `dataset_name` from the run config, else the name of its shards folder."""
    name = run.config.get("dataset_name")
    if not name and run.config.get("data"):
        name = Path(str(run.config["data"]).rstrip("/")).name
    return str(name) if name else None


def _backbone_type(model) -> str | None:
    backbone = getattr(model.config, "backbone_config", None)
    return getattr(backbone, "model_type", None)


def _architecture_rows(model) -> list[tuple[str, str]]:
    config = model.config
    rows = [("class", f"`{type(model).__name__}`"), ("model_type", f"`{config.model_type}`")]
    backbone = getattr(config, "backbone_config", None)
    if backbone is not None:
        rows.append(("backbone", f"`{backbone.model_type}`"))
        for name in (
            "num_rois",
            "num_channels",
            "image_size",
            "num_frames",
            "embed_dim",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "patch_size",
            "spatial_rank",
            "readout_size",
        ):
            value = getattr(backbone, name, None)
            if value is not None:
                rows.append((f"backbone {name}", f"{value}"))
    for name in ("signature_dim", "projection_hidden_size", "projection_num_layers", "temperature"):
        value = getattr(config, name, None)
        if name == "projection_hidden_size" and getattr(config, "projection_num_layers", None) == 0:
            continue  # no projection: its width does not apply
        if value is not None:
            rows.append((name, f"{value}"))
    if _is_head(model):
        rows.append(("problem_type", f"{config.problem_type or 'inferred from labels'}"))
        rows.append(("num_labels", f"{config.num_labels}"))
        if config.id2label and config.problem_type != "regression":
            rows.append(("labels", ", ".join(str(config.id2label[i]) for i in sorted(config.id2label))))
    rows.append(("parameters", f"{model.num_parameters():,}"))
    return rows


def _is_head(model) -> bool:
    return type(model).__name__.endswith("ForPhenotypePrediction")


def _preprocessing_rows(processor) -> list[tuple[str, str]]:
    if processor is None:
        return []
    rows = [("input", "ROI time series (V, T)" if processor.input_type == "roi" else "volumes (C, H, W, D, T)")]
    if processor.num_rois is not None:
        rows.append(("ROIs", f"{processor.num_rois}"))
    if processor.volume_shape is not None:
        rows.append(("volume shape", f"{tuple(processor.volume_shape)}"))
    if processor.atlas:
        rows.append(("atlas", processor.atlas))
    elif processor.input_type == "roi":
        rows.append(("atlas", f"none: {_unnamed_rois(processor)}"))
    if processor.parcel_order_hash:
        rows.append(("parcel-order hash", f"`{processor.parcel_order_hash}`"))
    normalisation = {"zscore": "z-score of each ROI over the scan's frames", "none": "none"}
    rows.append(("normalisation", normalisation.get(processor.normalization, processor.normalization)))
    if processor.target_repetition_time is not None:
        rows.append(("TR", f"resampled to {processor.target_repetition_time} s"))
    else:
        rows.append(("TR", "native (from the file header or passed as repetition_time)"))
    if processor.window_length is not None:
        rows.append(("window", f"{processor.window_length} frames ({processor.crop} crop)"))
    else:
        rows.append(("window", "none: a whole scan is one input"))
    rows.append(("minimum length", f"{processor.min_length} frames"))
    return rows


def _unnamed_rois(processor) -> str:
    """What an ROI input must be when the processor names no atlas."""
    count = f"{processor.num_rois} " if processor.num_rois is not None else ""
    where = " (their names are `roi_labels` in `preprocessor_config.json`)" if processor.roi_labels else ""
    return (
        f"the input is {count}ROI series whose parcellation is not recorded; inputs must have the same ROIs in the same "
        f"order{where}"
    )


def _order_check(processor) -> str | None:
    """What the processor checks of an ROI input's parcellation, in a sentence (`None` for volumes)."""
    if processor is None or processor.input_type != "roi":
        return None
    if processor.parcel_order_hash:
        return (
            "Inputs that carry ROI labels (a TSV header, CIFTI parcels, `roi_labels=`) are checked against the "
            "parcel-order hash and refused in another order; a bare array is checked only for its number of ROIs."
        )
    return "Only the number of ROIs is checked: the ROI order is not recorded."


def _expected_input(processor) -> str:
    """The limitation on inputs: what a scan must be for the model's figures to apply."""
    transfer = (
        "scans from another pipeline, scanner population or age range may give signatures or predictions that do "
        "not transfer."
    )
    if processor is None:
        return (
            "No processor was saved with this model, so the ROIs, their order and the preprocessing it expects are "
            f"not recorded: give it inputs prepared as its training data were; {transfer}"
        )
    if processor.input_type != "roi":
        return f"It expects volumes of the shape and preprocessing above; {transfer}"
    if processor.atlas:
        return f"It expects the `{processor.atlas}` atlas, its parcel order and the preprocessing above; {transfer}"
    unnamed = _unnamed_rois(processor)
    return f"{unnamed[:1].upper()}{unnamed[1:]}, with the preprocessing above; {transfer}"


TRAINING_KEYS = (
    ("task", "task"),
    ("objective", "objective"),
    ("positives", "positive pairs"),
    ("dataset_name", "dataset"),
    ("data", "data (shards)"),
    ("manifest", "manifest"),
    ("splits", "splits"),
    ("target", "target"),
    ("problem_type", "problem_type"),
    ("probe_solver", "head solver"),
    ("base_model", "base model"),
    ("learning_rate", "learning rate"),
    ("subjects_per_batch", "subjects per batch (two scans each)"),
    ("batch_size", "batch size"),
    ("max_steps", "steps"),
    ("seed", "seed"),
    ("mixed_precision", "mixed precision"),
    ("metric_for_best_model", "model selection metric"),
    ("greater_is_better", "greater is better"),
)
# RunConfig holds the fields of every recipe; a card shows those its run used.
RECIPE_KEYS = {
    "r2tnet pretrain": {"objective", "target", "problem_type", "probe_solver", "batch_size"},
    "mnemodyn pretrain": {"positives", "target", "problem_type", "probe_solver", "subjects_per_batch"},
    "finetune": {"objective", "positives", "subjects_per_batch"},
}


def _recipe(config: dict) -> str:
    if config.get("task") == "pretrain":
        return "mnemodyn pretrain" if config.get("model_type") == "mnemodyn" else "r2tnet pretrain"
    return "finetune"


def _training_windows(config: dict) -> str | None:
    """The frames per training input, as the run cut them (R2T-Net pretraining crops at random lengths)."""
    if "window_length" not in config:
        return None
    longest, shortest = config["window_length"], config.get("min_window_length")
    if _recipe(config) == "r2tnet pretrain" and shortest is not None:
        if longest is None:
            return f"random crops from {shortest} frames to the whole scan"
        return f"random crops of {min(shortest, longest)} to {longest} frames (at most the scan's length)"
    return f"{longest}-frame windows (at most the scan's length)" if longest else "whole scans"


def _training_rows(run: RunRecord) -> list[tuple[str, str]]:
    config = run.config
    recipe = _recipe(config)
    unused = set(RECIPE_KEYS[recipe])
    if recipe == "r2tnet pretrain" and config.get("supervised_weight"):
        unused.discard("target")  # the supervised term's phenotype
    if recipe == "finetune" and config.get("probe_solver") == "ridge":
        unused |= {"learning_rate", "batch_size", "max_steps"}  # a closed-form fit has no optimizer
    rows = []
    for key, label in TRAINING_KEYS:
        value = config.get(key)
        if key in unused or value is None or value == "" or value == []:
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        if key in ("data", "manifest", "splits"):
            # the name only: a published card should not carry the paths of the machine it was trained on (nor a
            # staging folder that was renamed since)
            value = Path(str(value)).name
        rows.append((label, f"`{value}`" if key in ("data", "manifest", "splits", "base_model") else f"{value}"))
    if windows := _training_windows(config):
        rows.append(("training windows", windows))
    return rows


SPLIT_ROLES = (
    ("train", "training"),
    ("validation", "validation (they chose the checkpoint)"),
    ("test", "test (never trained on)"),
)


def _training_data_rows(data: TrainingData) -> list[tuple[str, str]]:
    rows = []
    if data.name:
        rows.append(("dataset", f"`{data.name}`"))
    kind = {True: "simulated people (synthetic data)", False: "real fMRI", None: None}[data.simulated]
    if what := ": ".join(part for part in (kind, data.description) if part):
        rows.append(("data", what))
    if data.subjects:
        counts = ", ".join(f"{data.subjects.get(split, 0)} {role}" for split, role in SPLIT_ROLES)
        rows.append(("people", f"{sum(data.subjects.values())}: {counts}"))
    return rows


def _held_out_section(cohort: HeldOutCohort) -> dict:
    """A cohort's held-out figures for the template: a title, an introduction and one table row per length."""
    report = cohort.report
    sessions = ", ".join(report["sessions"])
    sides = f"sessions ({sessions})" if report["pairing"] == "session" else "rest and task"
    intro = (
        f"{cohort.about} {report['subjects']} test subjects never trained on; Rank-1 identification both ways between "
        f"{sides}, every ordered pair, mean ± std over pairs."
    )
    rows = []
    for row in comparison_rows(report):
        baseline = f"`{row['strongest']}` {rank1_text(row['baseline'])}"
        if row["hindsight"]:
            baseline += f" (best on test in hindsight: `{row['hindsight']}` {rank1_text(row['hindsight_baseline'])})"
        rows.append((row["label"], rank1_text(row["model"]), baseline, rank1_text(row["raw"])))
    return {"title": cohort.title, "intro": intro, "rows": rows, "notes": list(cohort.notes)}


def _evaluation_note(run: RunRecord, metrics: list, held_out) -> str | None:
    """What a run's evaluation lacks, said plainly: no figures at all, or none on held-out test subjects."""
    if held_out or any(split == "test" for split, *_ in metrics):
        return None
    if not metrics:
        return "This run recorded no evaluation figures." if run.source is not None else None
    return (
        "No held-out test figures were recorded for this run: the figures below are on the validation subjects, "
        "which also chose the checkpoint, so they are optimistic."
    )


def _format(value: float) -> str:
    return f"{value:.4g}"


def _rate(value: float) -> str:
    """A Rank-1 rate as it is read: three decimals."""
    return f"{value:.3f}"


def build_model_card(
    model,
    processor=None,
    run: RunRecord | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    training_data: TrainingData | None = None,
    held_out: list[HeldOutCohort] | tuple = (),
) -> ModelCard:
    """Render the model card of `model` (and its `processor`) with what `run` recorded.

    Args:
        model: an r2tnet_hf `PreTrainedModel`.
        processor (`FmriProcessor`, *optional*): the processor saved beside it.
        run (`RunRecord`, *optional*): the run's config and metrics (`RunRecord.from_run_dir`).
        repo_id (`str`, *optional*): the Hub repo id, used in the loading snippet (else `"path/to/model"`).
        license (`str`, *optional*): a Hub license id; else the run config's `license`, else `"apache-2.0"` (the
            license of the r2tnet-hf code; set it to the data's terms when they are stricter).
        training_data (`TrainingData`, *optional*): who the model was trained on; else what the run records
            (`TrainingData.from_run`).
        held_out (`list[HeldOutCohort]`, *optional*): identification of test subjects per cohort, beside the
            baselines; shown in place of the run's own held-out summary.
    """
    run = run or RunRecord()
    training_data = training_data or TrainingData.from_run(run)
    finetune = _is_finetune(model, run)
    metrics = recorded_metrics(run)
    card_data = _card_data(model, run, repo_id, license, finetune, metrics)
    summary, intended_use = _summary_and_use(model, run, finetune)
    results = [
        (split, f"FC baseline {metric}" if baseline else metric, _format(value))
        for split, metric, value, baseline in metrics
    ]
    return ModelCard.from_template(
        card_data,
        template_str=template_text(),
        title=_model_name(model, repo_id),
        summary=summary,
        base_model=card_data.base_model,
        auto_class="AutoModel",
        load_note=_load_note(model),
        repo_id=repo_id or "path/to/model",
        cli_command="predict" if finetune else "signatures",
        cli_output="predictions.csv" if finetune else "signatures.parquet",
        architecture=_architecture_rows(model),
        preprocessing=_preprocessing_rows(processor),
        order_check=_order_check(processor),
        training_data=_training_data_rows(training_data),
        training=_training_rows(run),
        selection=_selection(run),
        headline=None if held_out else _headline(run),
        held_out=[_held_out_section(cohort) for cohort in held_out],
        evaluation_note=_evaluation_note(run, metrics, held_out),
        results=results,
        intended_use=intended_use,
        expected_input=_expected_input(processor),
        citations=CITATIONS,
    )


def _model_name(model, repo_id: str | None) -> str:
    """The card's title: the repo's name, else the model's class."""
    return (repo_id or "").split("/")[-1] or f"{type(model).__name__}"


def _card_data(model, run: RunRecord, repo_id, license, finetune: bool, metrics: list) -> ModelCardData:
    """The card's metadata: library, license, tags, dataset, base model, pipeline and the `model-index` results (when
    the run names its dataset and recorded metrics)."""
    model_type = model.config.model_type
    backbone_type = _backbone_type(model)
    dataset = _dataset(run)
    base_model = run.config.get("base_model") if finetune else None
    tags = ["fmri", "neuroscience", model_type, *([backbone_type] if backbone_type else [])]
    tags.append("phenotype-prediction" if finetune else "brain-signature")
    eval_results = None
    if dataset and metrics:
        task_type = _task_type(model, finetune)
        eval_results = [
            EvalResult(
                task_type=task_type,
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=split,
                metric_type=f"fc_baseline_{metric}" if baseline else metric,
                metric_name=f"FC baseline {metric}" if baseline else metric,
                metric_value=value,
            )
            for split, metric, value, baseline in metrics
        ]
    return ModelCardData(
        library_name=LIBRARY_NAME,
        license=license or run.config.get("license") or DEFAULT_LICENSE,
        tags=tags,
        datasets=[dataset] if dataset else None,
        base_model=str(base_model) if base_model else None,
        pipeline_tag="feature-extraction" if not finetune else None,
        model_name=_model_name(model, repo_id) if eval_results else None,
        eval_results=eval_results,
    )


def _summary_and_use(model, run: RunRecord, finetune: bool) -> tuple[str, str]:
    """The card's opening paragraph (what the model does, and the run's `description`) and its intended use."""
    backbone_type = _backbone_type(model)
    backbone_text = f" on a `{backbone_type}` backbone" if backbone_type else ""
    signature_dim = getattr(model.config, "signature_dim", 2048)
    if finetune:
        target = run.config.get("target")
        what = f"predicts `{target}`" if target else "predicts phenotypes"
        summary = (
            f"An R2T-Net phenotype model{backbone_text}: it {what} from resting-state fMRI, with a "
            f"{model.config.problem_type or 'regression/classification'} head on the {signature_dim}-d brain signature."
        )
        intended_use = (
            "Research on brain–phenotype associations from resting-state fMRI in cohorts like the training data. "
            "Predictions carry the error shown under Evaluation; they are not clinical measurements."
        )
    else:
        together = POSITIVES_TEXT.get(run.config.get("positives"), POSITIVES_TEXT["cross_modality"])
        summary = (
            f"An R2T-Net encoder{backbone_text}: it maps a scan to an L2-normalised {signature_dim}-d brain "
            f"signature. R2T-Net trains it with NT-Xent so that {together} land together."
        )
        intended_use = (
            "Research: subject fingerprinting, and frozen features for downstream phenotype models "
            "(`R2TNetForPhenotypePrediction`)."
        )
    if run.config.get("description"):
        summary += f"\n\n{run.config['description']}"
    return summary, intended_use


def _selection(run: RunRecord) -> str | None:
    """How the checkpoint was chosen, when the run recorded it."""
    if not run.eval_results.get("metric"):
        return None
    direction = "higher" if run.eval_results.get("greater_is_better", True) else "lower"
    step = run.eval_results.get("step")
    at_step = f" at step {step}" if step is not None else ""
    return f"Checkpoint selected by `{run.eval_results['metric']}` ({direction} is better){at_step}."


def _load_note(model) -> str | None:
    """What `AutoModel` gives for a model with a head (the encoder), and how to load the head."""
    if not _is_head(model):
        return None
    return (
        "`AutoModel` gives the encoder (`R2TNetModel`) of this checkpoint; for the phenotype head use "
        "`r2tnet_hf.R2TNetForPhenotypePrediction.from_pretrained(...)` or `r2tnet_hf.hub.load_model(...)`."
    )


def check_card_offline(card: ModelCard | str) -> dict:
    """The offline stand-in for `ModelCard.validate()` (which posts the metadata to the Hub).

    Checks that the metadata block parses as YAML into a mapping, that it survives a `ModelCardData` round trip
    unchanged, that `library_name` is set, and that `model-index` (if present) parses with
    `huggingface_hub.repocard_data.model_index_to_eval_results`. Returns the metadata; raises `ValueError`.
    """
    text = card if isinstance(card, str) else str(card)
    if not text.startswith("---\n"):
        raise ValueError("model card: no YAML metadata block at the top")
    try:
        block = text[4:].split("\n---\n", 1)[0]
        metadata = yaml.safe_load(block)
    except yaml.YAMLError as error:
        raise ValueError(f"model card: metadata is not valid YAML ({error})") from error
    if not isinstance(metadata, dict):
        raise ValueError("model card: metadata is not a mapping")
    if not metadata.get("library_name"):
        raise ValueError("model card: no library_name")
    round_trip = ModelCardData(**metadata).to_dict()
    if round_trip != metadata:
        raise ValueError(f"model card: metadata changes through ModelCardData: {metadata} != {round_trip}")
    if "model-index" in metadata:
        name, results = model_index_to_eval_results(metadata["model-index"])
        if not name or not results:
            raise ValueError("model card: model-index has no name or no results")
    return metadata


__all__ = [
    "CITATIONS",
    "DEFAULT_LICENSE",
    "LIBRARY_NAME",
    "HeldOutCohort",
    "RunRecord",
    "TrainingData",
    "build_model_card",
    "check_card_offline",
    "recorded_metrics",
    "template_text",
]
