"""Held-out identification on real task fMRI: R2T-Net beside the strongest classical baseline, by subject-level
cross-validation on the connattractor development cohort (subjects 1-16 only; 17-32 are never read).

Each repetition shuffles the 16 subjects into two halves; each half is the test set once, and the other half is
split into training and validation subjects. Per fold, through the package's own user path:

1. `scripts/pretrain.py`'s recipe (`r2tnet_hf.training.pretrain`) on the fold's training subjects, runs as sessions
   (`--positives cross_session`), validation subjects picking `best/` (step 0, the fitted start, is a candidate);
2. `r2tnet fingerprint`'s evaluation (`run_fingerprint_evaluation`) of `best/` on the test subjects, at full length
   and from non-overlapping segments, beside the baselines fitted on the same training subjects and chosen on the
   same validation subjects.

It prints one line per fold and length, then the means over folds, and writes `OUTPUT/summary.json`.

    python bench/connattractor_fingerprint.py                    # 3 repetitions × 2 folds, segments of 30, 50, 100
    python bench/connattractor_fingerprint.py --repetitions 1 --max-steps 20    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def folds(subjects: list[str], repetitions: int, validation: int, seed: int):
    for repetition in range(repetitions):
        order = [subjects[i] for i in np.random.default_rng(seed + repetition).permutation(len(subjects))]
        half = len(order) // 2
        for test, rest in ((order[:half], order[half:]), (order[half:], order[:half])):
            yield (
                repetition,
                {
                    "train": sorted(rest[validation:]),
                    "validation": sorted(rest[:validation]),
                    "test": sorted(test),
                },
            )


def projection_check(fold: Path, manifest: Path, splits: dict, args) -> dict:
    """Rank-1 of the test subjects from the fold's signatures after a fixed random orthonormal projection."""
    import torch

    from r2tnet_hf.data.manifest import read_manifest
    from r2tnet_hf.evaluation.fingerprint_scans import encode_scans, load_encoder
    from r2tnet_hf.evaluation.fingerprinting import ScanSet, pairwise_identification

    encoder, processor = load_encoder(fold / "run" / "best")
    records = [r for r in read_manifest(manifest).records if r.subject in set(splits["test"])]
    series = [processor.prepare(read_manifest(manifest).resolve(r), r.repetition_time) for r in records]
    scans = ScanSet([s.data for s in series], [r.subject for r in records], [r.session for r in records],
                    repetition_times=[s.repetition_time for s in series])  # fmt: skip
    width = encoder.config.signature_dim
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(width, args.projection_check, generator=generator, dtype=torch.float64))[0]
    found = {}
    for length in [None, *args.segment_length]:
        rows = scans.segments(length)
        signatures = encode_scans(encoder, rows).astype(np.float64) @ basis.numpy()
        found["full" if length is None else str(length)] = pairwise_identification(
            signatures, rows.subjects, rows.sessions
        )["rank1"]
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="runs/bench-connattractor", help="work and result folder")
    parser.add_argument("--repetitions", type=int, default=3, help="shuffles of the 16 subjects (2 folds each)")
    parser.add_argument("--validation", type=int, default=2, help="validation subjects per fold (from the train half)")
    parser.add_argument("--segment-length", type=int, nargs="+", default=[30, 50, 100], help="segment lengths (frames)")
    parser.add_argument("--max-steps", type=int, default=100, help="pretraining steps per fold")
    parser.add_argument("--eval-steps", type=int, default=25, help="validation every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--projection-check",
        type=int,
        default=None,
        metavar="D",
        help="also score the model's signatures projected to D dimensions by a fixed random orthonormal map "
        "(what a D-d signature would cost the tangent features)",
    )
    args = parser.parse_args(argv)

    from transformers.utils import logging as transformers_logging

    from r2tnet_hf.data.demo import write_connattractor_cohort
    from r2tnet_hf.data.shards import ConvertOptions, convert
    from r2tnet_hf.data.splits import save_splits
    from r2tnet_hf.evaluation.fingerprint_scans import run_fingerprint_evaluation
    from r2tnet_hf.training.config import RunConfig
    from r2tnet_hf.training.loop import pretrain

    transformers_logging.set_verbosity_error()
    output = Path(args.output)
    manifest = output / "data" / "manifest.tsv"
    if not manifest.is_file():
        write_connattractor_cohort(output / "data")
    shards = output / "shards"
    if not (shards / "manifest.json").is_file():
        convert(manifest, shards, ConvertOptions(min_length=64), progress=False)
    subjects = sorted({line.split("\t")[0] for line in manifest.read_text().splitlines()[1:]})
    started = time.perf_counter()
    results = []
    for number, (repetition, splits) in enumerate(folds(subjects, args.repetitions, args.validation, args.seed)):
        fold = output / f"fold_{number}"
        shutil.rmtree(fold, ignore_errors=True)
        fold.mkdir(parents=True)
        save_splits(splits, fold / "splits.json", seed=args.seed + repetition)
        pretrain(
            RunConfig(
                data=str(shards),
                output_dir=str(fold / "run"),
                splits=str(fold / "splits.json"),
                positives="cross_session",
                subjects_per_batch=len(splits["train"]),
                max_steps=args.max_steps,
                eval_steps=args.eval_steps,
                save_steps=args.max_steps,
                logging_steps=max(1, args.max_steps // 4),
                seed=args.seed,
                progress=False,
            )
        )
        best = json.loads((fold / "run" / "best" / "eval_results.json").read_text())
        (fold / "fingerprint").mkdir()
        report = run_fingerprint_evaluation(
            fold / "run" / "best",
            manifest,
            fold / "fingerprint",
            segment_lengths=args.segment_length,
            splits_path=fold / "splits.json",
            progress=False,
        )
        projected = projection_check(fold, manifest, splits, args) if args.projection_check else {}
        for length, entry in report["lengths"].items():
            row = {
                "fold": number,
                "length": length,
                "best_step": best["step"],
                "model": entry["model"]["rank1"],
                "strongest": entry["strongest"],
                "baseline": entry["baselines"][entry["strongest"]]["rank1"],
                "raw": entry["baselines"]["raw"]["rank1"],
                "all": {name: found["rank1"] for name, found in entry["baselines"].items()},
                **({"projected": projected[length]} if length in projected else {}),
            }
            results.append(row)
            print(
                f"fold {number} ({len(splits['train'])} train / {len(splits['validation'])} validation / "
                f"{len(splits['test'])} test), {length:>4}: model {row['model']:.3f}, strongest baseline "
                f"{row['strongest']} {row['baseline']:.3f}, raw FC {row['raw']:.3f} (best/ from step {row['best_step']})",
                flush=True,
            )
    summary = {"folds": results, "seconds": round(time.perf_counter() - started, 1), "arguments": vars(args)}
    print(f"\nmean Rank-1 over {len({r['fold'] for r in results})} folds (test subjects never trained on):")
    for length in dict.fromkeys(r["length"] for r in results):
        rows = [r for r in results if r["length"] == length]
        mean = {key: float(np.mean([r[key] for r in rows])) for key in ("model", "baseline", "raw")}
        per_baseline = {n: float(np.mean([r["all"][n] for r in rows])) for n in rows[0]["all"]}
        best_fixed = max(per_baseline, key=per_baseline.get)
        wins = sum(r["model"] > r["baseline"] for r in rows)
        losses = sum(r["model"] < r["baseline"] for r in rows)
        summary[length] = {**mean, "per_baseline": per_baseline, "wins": wins, "losses": losses}
        print(
            f"  {length:>4}: model {mean['model']:.3f} | strongest baseline (chosen on validation) "
            f"{mean['baseline']:.3f} | best single baseline in hindsight {best_fixed} {per_baseline[best_fixed]:.3f} "
            f"| raw FC {mean['raw']:.3f}; model − strongest {mean['model'] - mean['baseline']:+.3f} "
            f"(ahead in {wins}, behind in {losses} of {len(rows)} folds)"
        )
        if "projected" in rows[0]:
            summary[length]["projected"] = float(np.mean([r["projected"] for r in rows]))
            dimensions = args.projection_check
            print(
                f"        the model's signature projected to {dimensions} dimensions: {summary[length]['projected']:.3f}"
            )
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['seconds']:.0f} s; wrote {output / 'summary.json'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
