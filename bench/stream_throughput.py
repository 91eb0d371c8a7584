"""Streamed shard throughput on both read paths against a raw `np.fromfile` of the same bytes, measured in one run.

    python bench/stream_throughput.py                  # 128 scans of 400 ROIs × 1200 frames (float32), 8 shards
    python bench/stream_throughput.py --scans 256 --rois 333 --frames 600

It writes `.npy` scans and a manifest, converts them with `r2tnet_hf.data.shards.convert` (the code behind
`r2tnet convert`), builds the folder's memory-mapped Arrow cache (what `FmriStream` does on first use), then dumps
every shard's array bytes, row by row, into one `.bin` per shard. Each path below reads all rows once per repeat; the
times are medians of interleaved repeats with a warm page cache, so this measures decoding overhead rather than the
disk. The Arrow cache is built once, before the timing; each path's stream object is built once too and re-seeded
per epoch, as training does.

- `np.fromfile`: the reference, the same bytes read as one float32 array per shard (one copy of every byte).
- parquet stream: `FmriStream(source="parquet")`, `load_dataset("parquet", streaming=True)` with the processor's
  checks per row, whole rows collated into batches of 16 (one copy of every row, into its batch).
- arrow stream: `FmriStream(source="arrow")`, `Dataset.from_file(...).to_iterable_dataset(...)` over the cache
  whose rows were checked when it was built, the same batches.
- arrow stream, reused batch buffers: the same, collated into a ring of 4 reused batch buffers
  (`FmriStream(buffer_slots=4)`, what `fmri_loader` sets up and the training loops read through), so no batch
  is allocated and page-faulted afresh; `np.fromfile` allocates a fresh array every time.
- arrow stream, samples: single samples, which are views of the memory-mapped rows (no copy at all).
- arrow stream, 200-frame random windows in batches of 16.
- `ShardFolder.read_row`: memory-mapped Parquet random access (the pair sampler's path), rows in order.

The ratio is (time of `np.fromfile`) ÷ (time of the path), i.e. its throughput as a fraction of the raw read; the
goal for the training stream (arrow stream) is 0.8.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from timing import interleaved_medians

from r2tnet_hf.data.manifest import Manifest, ScanRecord, write_manifest
from r2tnet_hf.data.shards import ConvertOptions, convert
from r2tnet_hf.data.streaming import FmriStream, ShardFolder, build_arrow_cache, decode_array


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
    build_arrow_cache(shard_folder)
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
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the data (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        shards, raw_files = build(Path(tmp), args.scans, args.rois, args.frames, args.shards)
        rows = len(shards)
        total_bytes = sum(f.stat().st_size for f in raw_files)

        def fromfile() -> int:
            return sum(np.fromfile(f, dtype=np.float32).size for f in raw_files)

        def epoch(stream: FmriStream) -> int:
            stream.set_epoch(0)
            if stream.batch_size is None:
                return sum(sample["fmri_values"].size for sample in stream)
            return sum(batch["fmri_values"].numel() for batch in stream)

        streams = {
            "parquet": FmriStream(shards, shuffle_buffer=16, seed=0, batch_size=16, source="parquet"),
            "arrow": FmriStream(shards, shuffle_buffer=16, seed=0, batch_size=16, source="arrow"),
            "ring": FmriStream(shards, shuffle_buffer=16, seed=0, batch_size=16, source="arrow", buffer_slots=4),
            "samples": FmriStream(shards, shuffle_buffer=16, seed=0, source="arrow"),
            "windows": FmriStream(shards, window_length=200, shuffle_buffer=16, seed=0, batch_size=16, source="arrow"),
        }

        def random_access() -> int:
            reader = ShardFolder(shards.folder)
            return sum(decode_array(reader.read_row(index)).size for index in range(rows))

        paths = [
            ("np.fromfile of the same bytes", fromfile),
            ("parquet stream (batches of 16)", lambda: epoch(streams["parquet"])),
            ("arrow stream (batches of 16)", lambda: epoch(streams["arrow"])),
            ("arrow stream, reused batch buffers", lambda: epoch(streams["ring"])),
            ("arrow stream, samples (views)", lambda: epoch(streams["samples"])),
            ("arrow stream, 200-frame windows", lambda: epoch(streams["windows"])),
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
    print(
        f"ratio to np.fromfile: parquet stream {medians[0] / medians[1]:.2f}, arrow stream {medians[0] / medians[2]:.2f}"
        f", arrow stream into reused buffers (the training loops' path) {medians[0] / medians[3]:.2f}"
        " (goal >= 0.8 for the training stream)"
    )


if __name__ == "__main__":
    main()
