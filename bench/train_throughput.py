"""Pretraining throughput and the share of step time spent waiting on data, measured by the training loop itself.

    python bench/train_throughput.py                         # CPU: 48 subjects, 200 ROIs × 600 frames, 60 steps
    python bench/train_throughput.py --backbone roi_transformer
    python bench/train_throughput.py --rois 400 --frames 1200 --hidden-size 256 --steps 100

It writes a synthetic rest + task cohort, converts it to shards, and runs `r2tnet_hf.training.loop.pretrain` (the code
behind `scripts/pretrain.py`: `PairSampler` batches with rest⇄task positives, NT-Xent, AdamW, the cosine schedule) with
one process. The loop logs, every `--log-every` steps, `samples_per_second` (views through the model per second) and
`data_wait_fraction` (time blocked in `next(batches)` ÷ wall time of the interval). The figures printed are medians
over the intervals after the first (warm-up). The goal is a wait fraction below 0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from r2tnet_hf.data.shards import ConvertOptions, convert
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from r2tnet_hf.training.config import RunConfig
from r2tnet_hf.training.loop import pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=48)
    parser.add_argument("--rois", type=int, default=200)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--subjects-per-batch", type=int, default=8)
    parser.add_argument(
        "--backbone", default="connectome_transformer", choices=["connectome_transformer", "roi_transformer"]
    )
    parser.add_argument("--hidden-size", type=int, default=128, help="token width (embed_dim or hidden_size)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_synthetic_cohort(folder / "cohort", subjects=args.subjects, sessions=1, rois=args.rois, frames=args.frames)
        convert(folder / "cohort" / "manifest.tsv", folder / "shards", ConvertOptions(), progress=False)
        config = RunConfig(
            data=str(folder / "shards"),
            output_dir=str(folder / "run"),
            validation_fraction=0.1,
            test_fraction=0.1,
            window_length=args.window,
            subjects_per_batch=args.subjects_per_batch,
            backbone=args.backbone,
            backbone_config={
                "embed_dim" if args.backbone == "connectome_transformer" else "hidden_size": args.hidden_size,
                "num_hidden_layers": args.layers,
                "num_attention_heads": 4,
                "intermediate_size": 4 * args.hidden_size,
            },
            max_steps=args.steps,
            logging_steps=args.log_every,
            eval_steps=10**9,
            save_steps=10**9,
            progress=False,
        )
        pretrain(config)
        events = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
    intervals = [e for e in events if "data_wait_fraction" in e][1:]
    speed = statistics.median(e["samples_per_second"] for e in intervals)
    wait = statistics.median(e["data_wait_fraction"] for e in intervals)
    print(
        f"{args.subjects} subjects, {args.rois} ROIs × {args.frames} frames, windows of {args.window}, "
        f"{2 * args.subjects_per_batch} views per step, {args.backbone} width {args.hidden_size} × {args.layers} layers; "
        f"medians of {len(intervals)} intervals of {args.log_every} steps"
    )
    print(f"samples/s: {speed:.1f}")
    print(f"data wait fraction: {wait:.3f} (goal < 0.1; ratio to goal {wait / 0.1:.2f})")


if __name__ == "__main__":
    main()
