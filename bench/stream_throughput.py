"""Streamed shard throughput against a raw `np.fromfile` of the same bytes, measured in one run.

    python bench/stream_throughput.py                  # 128 scans of 400 ROIs × 1200 frames (float32), 8 shards
    python bench/stream_throughput.py --scans 256 --rois 333 --frames 600

It writes `.npy` scans and a manifest, converts them with `r2tnet_hf.data.shards.convert` (the code behind
`r2tnet convert`), then dumps every shard's array bytes, row by row, into one `.bin` per shard. Each path below
reads all rows once per repeat; the times are medians of interleaved repeats with a warm page cache, so this
measures decoding overhead rather than the disk.

- `np.fromfile`: the reference, the same bytes read as one float32 array per shard.
- `datasets` stream layer: the `load_dataset("parquet", streaming=True)` rows that `FmriStream` iterates, each
  decoded to a float32 array (`decode_array`).
- `FmriStream`, whole rows: the training stream with its block shuffle, resumable state and the processor's checks
  (rows were z-scored by `convert`, so the stream does not normalise again).
- `FmriStream`, 200-frame random windows.
- `ShardFolder.read_row`: memory-mapped random access (the pair sampler's path), rows in order.

The ratio is (time of `np.fromfile`) ÷ (time of the path), i.e. its throughput as a fraction of the raw read.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from timing import interleaved_medians

from r2tnet_hf.data.manifest import Manifest, ScanRecord, write_manifest
from r2tnet_hf.data.shards import ConvertOptions, convert
from r2tnet_hf.data.streaming import FmriStream, ShardFolder, decode_array


def build(folder: Path, scans: int, rois: int, frames: int, shards: int) -> tuple[ShardFolder, list[Path]]:
    rng = np.random.default_rng(0)
    records = []
    for index in range(scans):
        path = folder / "scans" / f"scan{index:04d}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, rng.standard_normal((frames, rois), dtype=np.float32))  # rows = timepoints
        subject, modality = f"sub-{index // 2:03d}", ("rest", "task")[index % 2]
        records.append(ScanRecord(subject, "1", modality, modality, str(path), repetition_time=0.72))
    write_manifest(Manifest(records, []), folder / "manifest.tsv")
    shard_mb = scans * rois * frames * 4 / shards / 2**20
    convert(
        folder / "manifest.tsv",
        folder / "shards",
        ConvertOptions(shard_size_mb=shard_mb * 0.999, min_length=16),
        progress=False,
    )
    shard_folder = ShardFolder(folder / "shards")
    raw_files = []
    import pyarrow.parquet as pq

    for file in shard_folder.files:
        column = pq.read_table(file, columns=["data"]).column("data")
        raw = Path(file).with_suffix(".bin")
        with open(raw, "wb") as handle:
            for value in column:
                handle.write(value.as_buffer())
        raw_files.append(raw)
    return shard_folder, raw_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=128)
    parser.add_argument("--rois", type=int, default=400)
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the data (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        shards, raw_files = build(Path(tmp), args.scans, args.rois, args.frames, args.shards)
        rows = len(shards)
        total_bytes = sum(f.stat().st_size for f in raw_files)

        def fromfile() -> int:
            return sum(np.fromfile(f, dtype=np.float32).size for f in raw_files)

        stream = FmriStream(shards, shuffle_buffer=16, seed=0)
        windows = FmriStream(shards, window_length=200, crop="random", shuffle_buffer=16, seed=0)

        def stream_layer() -> int:
            return sum(decode_array(row).size for row in stream._dataset(0))

        def whole_rows() -> int:
            stream.set_epoch(0)
            return sum(sample["fmri_values"].size for sample in stream)

        def random_windows() -> int:
            windows.set_epoch(0)
            return sum(sample["fmri_values"].size for sample in windows)

        def random_access() -> int:
            reader = ShardFolder(shards.folder)
            return sum(decode_array(reader.read_row(index)).size for index in range(rows))

        paths = [
            ("np.fromfile of the same bytes", fromfile),
            ("datasets stream layer + decode", stream_layer),
            ("FmriStream, whole rows", whole_rows),
            ("FmriStream, 200-frame random windows", random_windows),
            ("ShardFolder.read_row (mmap)", random_access),
        ]
        medians = interleaved_medians([function for _, function in paths], args.repeats)

    print(
        f"{rows} rows of {args.rois} ROIs × {args.frames} frames float32 in {len(raw_files)} shards, "
        f"{total_bytes / 2**20:.0f} MiB; medians of {args.repeats} interleaved repeats"
    )
    print(f"{'path':40s} {'samples/s':>10s} {'MB/s':>8s} {'ratio':>6s}")
    for (name, _), seconds in zip(paths, medians):
        print(f"{name:40s} {rows / seconds:10.0f} {total_bytes / seconds / 1e6:8.0f} {medians[0] / seconds:6.2f}")


if __name__ == "__main__":
    main()
