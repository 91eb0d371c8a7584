"""Pretraining throughput and the share of step time spent waiting on data, measured by the training loop itself.

    python bench/train_throughput.py                         # CPU: 48 subjects, 200 ROIs × 600 frames, 60 steps
    python bench/train_throughput.py --backbone roi_transformer
    python bench/train_throughput.py --rois 400 --frames 1200 --hidden-size 256 --steps 100

It writes a synthetic rest + task cohort, converts it to shards, and runs `r2tnet_hf.training.loop.pretrain` (the code
behind `scripts/pretrain.py`: `PairSampler` batches with rest⇄task positives, NT-Xent, AdamW, the cosine schedule) with
one process. The loop logs, every `--log-every` steps, `samples_per_second` (views through the model per second) and
`data_wait_fraction` (time blocked in `next(batches)` ÷ wall time of the interval). The figures printed are medians
over the intervals after the first (warm-up). The goal is a wait fraction below 0.1.

    python bench/train_throughput.py --data-only              # the data path alone: can the loader feed a GPU?

`--data-only` measures the loader without any model step: `--scans` scans of 400 ROIs × 600 frames converted as
float16, streamed by `FmriStream` from its memory-mapped Arrow cache in random 256-frame windows, batched in the
stream (one `np.stack` per batch) and read through `fmri_loader` with `--workers` worker processes, as a GPU run
would: the workers collate into a ring of reused shared-memory buffers. Interleaved with it, on the same workers: a
plain `DataLoader` over the same stream (a fresh shared-memory batch each time, as torch's default collate does), and
the transfer's own ceilings, batches of that shape filled from a constant into a ring or into fresh buffers with no
data read. It prints views per second for each (medians of `--passes` timed passes of `--views` views each, after a
warm-up pass) and the ratio of `fmri_loader` to the goal of 10,000 views/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from r2tnet_hf.data.manifest import Manifest, ScanRecord, write_manifest
from r2tnet_hf.data.shards import ConvertOptions, convert
from r2tnet_hf.data.streaming import BufferRing, FmriStream, _batch_buffer, fmri_loader
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
    parser.add_argument("--data-only", action="store_true", help="measure the loader alone (no model step)")
    parser.add_argument("--scans", type=int, default=256, help="--data-only: scans of --rois × --frames")
    parser.add_argument("--workers", type=int, default=2, help="--data-only: DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=32, help="--data-only: views per batch")
    parser.add_argument("--views", type=int, default=20000, help="--data-only: views per timed pass")
    parser.add_argument("--passes", type=int, default=3, help="--data-only: timed passes per loader")
    args = parser.parse_args()
    if args.data_only:
        return data_only(args)

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


class _Filled(torch.utils.data.IterableDataset):
    """The transfer's own ceiling: batches of the loader's shape and dtype, filled from one constant array into the
    same kind of buffers (a reused ring, or fresh shared memory), with no data read at all."""

    def __init__(self, shape: tuple[int, ...], batches: int, slots: int):
        super().__init__()
        self.shape, self.batches, self.slots = shape, batches, slots

    def __iter__(self):
        source = np.ones(self.shape, dtype=np.float16)
        info = torch.utils.data.get_worker_info()
        ring = BufferRing(self.slots) if self.slots else None
        for _ in range(self.batches // (info.num_workers if info else 1)):
            if ring:
                ring.next_batch()
            batch = ring.take(self.shape, np.float16) if ring else _batch_buffer(self.shape, np.float16)
            batch.numpy()[...] = source
            yield {"fmri_values": batch}


def data_only(args) -> None:
    rois = args.rois if args.rois != 200 else 400  # the data path's goal is set for 400 ROIs
    window = args.window if args.window != 512 else 256
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        records = []
        for index in range(args.scans):
            path = folder / "scans" / f"scan{index:04d}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, rng.standard_normal((args.frames, rois), dtype=np.float32))  # rows = timepoints
            modality = ("rest", "task")[index % 2]
            records.append(ScanRecord(f"sub-{index // 2:04d}", "1", modality, modality, str(path), 0.72))
        write_manifest(Manifest(records, []), folder / "manifest.tsv")
        shard_mb = args.scans * rois * args.frames * 2 / 8 / 2**20  # 8 shards
        convert(folder / "manifest.tsv", folder / "shards", ConvertOptions(dtype="float16", shard_size_mb=shard_mb),
                progress=False)  # fmt: skip

        def stream():
            return FmriStream(
                folder / "shards", window_length=window, batch_size=args.batch_size, dtype=None, source="arrow"
            )

        shape, workers = (args.batch_size, rois, window), args.workers
        persistent = {"persistent_workers": True} if workers else {}
        slots = 2 + 2  # fmri_loader's ring for the default prefetch_factor of 2
        loaders = {
            "fmri_loader (ring of reused shared-memory batches)": fmri_loader(stream(), num_workers=workers),
            "DataLoader over the same stream, a fresh batch each time": torch.utils.data.DataLoader(
                stream(), batch_size=None, num_workers=workers, **persistent
            ),
            "ceiling: ring batches filled from a constant, no data": torch.utils.data.DataLoader(
                _Filled(shape, args.views // args.batch_size, slots), batch_size=None, num_workers=workers,
                **persistent,
            ),
            "ceiling: fresh batches filled from a constant, no data": torch.utils.data.DataLoader(
                _Filled(shape, args.views // args.batch_size, 0), batch_size=None, num_workers=workers, **persistent
            ),
        }  # fmt: skip

        def views_per_second(batches) -> float:
            views, start = 0, time.perf_counter()
            while views < args.views:
                for batch in batches:
                    assert batch["fmri_values"].dtype == torch.float16
                    views += batch["fmri_values"].shape[0]
            return views / (time.perf_counter() - start)

        for loader in loaders.values():  # warm-up: workers, page cache, the cache's mapping
            views_per_second(loader)
        speeds = {name: [] for name in loaders}
        for _ in range(args.passes):  # interleaved
            for name, loader in loaders.items():
                speeds[name].append(views_per_second(loader))
    print(
        f"{args.scans} scans of {rois} ROIs × {args.frames} frames (float16, Arrow cache), random {window}-frame "
        f"windows, batches of {shape[0]}, {workers} DataLoader workers, no model step; "
        f"median of {args.passes} interleaved passes of {args.views} views"
    )
    for name, runs in speeds.items():
        speed = statistics.median(runs)
        print(f"{name}: {speed:.0f} views/s ({speed * rois * window * 2 / 1e9:.2f} GB/s)")
    speed = statistics.median(next(iter(speeds.values())))
    print(f"ratio of fmri_loader to the goal of 10,000 views/s: {speed / 10000:.2f}")


if __name__ == "__main__":
    main()
