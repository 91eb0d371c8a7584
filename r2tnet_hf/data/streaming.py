"""Reading shards back: a resumable stream for training, random row access, and batching.

`FmriStream` streams rows through `datasets`: from a memory-mapped Arrow copy of the shards (`arrow/`, built and
checked once, next to them) as a `datasets.IterableDataset` over its record batches, or from the Parquet shards with
`load_dataset("parquet", ..., streaming=True)` (the format shared on the Hub). It splits rows across processes with
`split_dataset_by_node`, shuffles them resumably, and cuts random temporal windows as the dataset's `FmriProcessor`
does; it yields samples, or whole batches collated in the stream. See `FmriStream` for exact mid-epoch resume, and
`fmri_loader` for reading batches through worker processes into reused shared-memory buffers.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import FmriInputError
from ..processing import FmriProcessor
from .io import FmriSeries
from .manifest import ScanRecord
from .shards import FORMAT, METADATA_COLUMNS

logger = logging.getLogger(__name__)


def _seed(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) & 0xFFFFFFFF for p in parts])


def decode_array(row: dict, dtype=np.float32) -> np.ndarray:
    """The row's array as `dtype` (`None`: as stored), time last: a read-only view of the row's bytes when they are of
    that dtype already."""
    array = np.frombuffer(row["data"], dtype=row["dtype"]).reshape(row["shape"])
    return array if dtype is None else array.astype(dtype, copy=False)


def _cell(value) -> str:
    """A phenotype value as a manifest cell: missing (None, NaN) as empty."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value}"


RECONVERT = "rerun r2tnet convert into a new folder"


def read_shard_manifest(folder: Path) -> dict:
    """`manifest.json` of a shard folder, checked: format, and per shard a file name in the folder, a row count and a
    sha256 (and, since `bytes` was recorded, a size)."""
    from ..weight_files import read_json_object

    path = folder / "manifest.json"
    if not path.is_file():
        raise FmriInputError.for_source(
            folder, expected="a folder written by r2tnet convert (manifest.json)", found="no manifest.json"
        )
    summary = read_json_object(path, "the JSON object written by r2tnet convert", RECONVERT)
    if summary.get("format") != FORMAT:
        raise FmriInputError.for_source(path, expected=f"format {FORMAT}", found=str(summary.get("format")))
    shards = summary.get("shards")
    if not isinstance(shards, list) or not shards:
        raise FmriInputError.for_source(
            path, expected="a non-empty list of shards", found=f"{shards!r:.60}", hint=RECONVERT
        )
    for number, shard in enumerate(shards):
        problem = _shard_entry_problem(shard)
        if problem:
            raise FmriInputError.for_source(
                path, expected=f"shard {number} as {{file, rows, sha256, bytes}}", found=problem, hint=RECONVERT
            )
    phenotypes = summary.get("phenotypes", {})
    if not isinstance(phenotypes, dict):
        raise FmriInputError.for_source(path, expected="phenotypes as an object", found=f"{phenotypes!r:.60}")
    return summary


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shard_entry_problem(shard) -> str | None:
    if not isinstance(shard, dict):
        return f"{shard!r:.60}"
    name = shard.get("file")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".parquet"):
        return f"file {name!r:.60}"
    if not _is_count(shard.get("rows")):
        return f"rows {shard.get('rows')!r:.40} for {name}"
    digest = shard.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        return f"sha256 {digest!r:.70} for {name}"
    if "bytes" in shard and not _is_count(shard["bytes"]):
        return f"bytes {shard['bytes']!r:.40} for {name}"
    return None


def check_shard(folder: Path, shard: dict):
    """The cheap check of one shard against its manifest entry: present, of the recorded size, with a readable Parquet
    footer holding the recorded rows. Returns the footer (`pyarrow` FileMetaData)."""
    import pyarrow.parquet as pq

    path = folder / shard["file"]
    if not path.is_file():
        raise FmriInputError.for_source(
            path, expected=f"the shard listed in manifest.json ({shard['rows']} rows)", found="no such file",
            hint=RECONVERT,
        )  # fmt: skip
    size = path.stat().st_size
    if "bytes" in shard and size != shard["bytes"]:
        raise FmriInputError.for_source(
            path, expected=f"{shard['bytes']} bytes (manifest.json)", found=f"{size} bytes", hint=RECONVERT
        )
    try:
        footer = pq.ParquetFile(path).metadata
    except Exception as error:  # pyarrow's ArrowInvalid, OSError...: the bytes are not a readable Parquet file
        reason = " ".join(str(error).split())[:160]
        raise FmriInputError.for_source(
            path, expected="a Parquet file with a readable footer", found=f"{type(error).__name__}: {reason}",
            hint=RECONVERT,
        ) from None  # fmt: skip
    if footer.num_rows != shard["rows"]:
        raise FmriInputError.for_source(
            path, expected=f"{shard['rows']} rows (manifest.json)", found=f"{footer.num_rows} rows", hint=RECONVERT
        )
    return footer


def verify_shards(folder: str | os.PathLike, progress: bool = True) -> dict:
    """The full check behind `r2tnet verify` and `--verify_shards`: every shard's sha256 against manifest.json (after
    the cheap checks). Raises one `FmriInputError` naming the first bad shard (and how many others are bad); returns
    `{"shards", "rows", "bytes"}` when all match."""
    from tqdm.auto import tqdm

    from .shards import sha256_file

    folder = Path(folder)
    summary = read_shard_manifest(folder)
    shards = summary["shards"]
    bad: list[FmriInputError] = []
    for shard in shards:
        try:
            check_shard(folder, shard)
        except FmriInputError as error:
            bad.append(error)
    sizes = {s["file"]: (folder / s["file"]).stat().st_size for s in shards if (folder / s["file"]).is_file()}
    with tqdm(
        total=sum(sizes.values()), unit="B", unit_scale=True, desc="verifying", disable=not progress, leave=False
    ) as bar:
        for shard in shards:
            path = folder / shard["file"]
            if shard["file"] not in sizes or any(error.source == str(path) for error in bad):
                bar.update(sizes.get(shard["file"], 0))
                continue
            digest = sha256_file(path)
            bar.update(sizes[shard["file"]])
            if digest != shard["sha256"]:
                bad.append(
                    FmriInputError.for_source(
                        path,
                        expected=f"sha256 {shard['sha256'][:16]}… (manifest.json)",
                        found=f"{digest[:16]}…",
                        hint=RECONVERT,
                    )
                )
    if bad:
        order = {str(folder / s["file"]): i for i, s in enumerate(shards)}
        bad.sort(key=lambda error: order.get(error.source, -1))
        first = bad[0]
        if len(bad) > 1:
            others = ", ".join(Path(error.source).name for error in bad[1:6]) + (", ..." if len(bad) > 6 else "")
            raise FmriInputError(f"{first}; {len(bad) - 1} more bad shards: {others}", source=first.source)
        raise first
    return {"shards": len(shards), "rows": sum(s["rows"] for s in shards), "bytes": sum(sizes.values())}


class ShardFolder:
    """A folder written by `r2tnet convert`: its shards, processor, metadata and random row access."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.summary = read_shard_manifest(self.folder)
        self.files = [str(self.folder / shard["file"]) for shard in self.summary["shards"]]
        self.rows_per_shard = [shard["rows"] for shard in self.summary["shards"]]
        self._footers = [check_shard(self.folder, shard) for shard in self.summary["shards"]]
        from ..hub.loading import read_processor

        self.processor = read_processor(self.folder)
        self.phenotype_columns = list(self.summary.get("phenotypes", {}))
        self._row_group = functools.lru_cache(maxsize=8)(self._read_row_group)

    def __len__(self) -> int:
        return sum(self.rows_per_shard)

    @functools.cached_property
    def metadata(self) -> dict[str, np.ndarray]:
        """Every metadata and phenotype column for all rows, in shard order (the array bytes are not read)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [*METADATA_COLUMNS, *self.phenotype_columns]
        table = pa.concat_tables([pq.read_table(f, columns=columns) for f in self.files])
        return {name: table.column(name).to_numpy(zero_copy_only=False) for name in columns}

    @functools.cached_property
    def subject_ids(self) -> dict[str, int]:
        """A stable integer id per subject (sorted names), for contrastive positives."""
        return {subject: index for index, subject in enumerate(sorted(set(self.metadata["subject"])))}

    @functools.cached_property
    def _offsets(self) -> np.ndarray:
        return np.cumsum([0, *self.rows_per_shard])

    def read_row(self, index: int) -> dict:
        """Row `index` (0-based over all shards, in shard order), read through a small cache of row groups."""
        shard = int(np.searchsorted(self._offsets, index, side="right") - 1)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        within = index - int(self._offsets[shard])
        group_size = self._row_group_sizes[shard]
        table = self._row_group(shard, within // group_size)
        return {name: table.column(name)[within % group_size].as_py() for name in table.column_names}

    def scans(self) -> list[tuple[ScanRecord, list[int]]]:
        """Every scan of the folder as a manifest record (`path` = its source file) with its rows in time order (a
        volume converted with `--window` has one row per window)."""
        meta = self.metadata
        rows: dict[int, list[int]] = {}
        for row, scan in enumerate(meta["scan_index"]):
            rows.setdefault(int(scan), []).append(row)
        scans = []
        for scan, members in sorted(rows.items()):
            members.sort(key=lambda row: int(meta["window_start"][row]))
            first = members[0]
            phenotypes = {name: _cell(meta[name][first]) for name in self.phenotype_columns}
            record = ScanRecord(
                str(meta["subject"][first]), str(meta["session"][first]), str(meta["modality"][first]),
                str(meta["task"][first]), str(meta["source"][first]), float(meta["repetition_time"][first]),
                phenotypes, scan,
            )  # fmt: skip
            scans.append((record, members))
        return scans

    def read_scan(self, rows: list[int]) -> FmriSeries:
        """One scan's rows joined along time, as `convert` stored it (validated, parcellated, z-scored)."""
        parts = [self.read_row(row) for row in rows]
        data = np.concatenate([decode_array(part) for part in parts], axis=-1)
        source = f"{self.folder}: {parts[0]['source']}"
        return FmriSeries(data, float(parts[0]["repetition_time"]), self.processor.roi_labels, source)

    @functools.cached_property
    def _row_group_sizes(self) -> list[int]:
        return [footer.row_group(0).num_rows if footer.num_row_groups else 0 for footer in self._footers]

    def _read_row_group(self, shard: int, group: int):
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.files[shard], memory_map=True).read_row_group(group)


def window_processor(shards: ShardFolder, window_length: int | None, crop: str = "random") -> FmriProcessor:
    """The processor that cuts training windows from rows: the folder's, with normalisation off.

    `r2tnet convert` z-scores every scan over its whole length before storing it (volume windows included), so the
    rows are already normalised as inference normalises a scan; z-scoring a window again would train on statistics
    that inference never sees, and costs most of the stream's time.
    """
    config = shards.processor.to_dict()
    return FmriProcessor(**{**config, "window_length": window_length, "crop": crop, "normalization": "none"})


def _rows_need_checks(processor: FmriProcessor, folder_processor: FmriProcessor) -> bool:
    """Whether `processor.prepare` would still do something to rows that `convert` prepared and the Arrow cache build
    checked: a second normalisation, another target TR or another expected layout than the folder's."""
    same = ("input_type", "num_rois", "volume_shape", "target_repetition_time")
    return processor.normalization != "none" or any(
        getattr(processor, name) != getattr(folder_processor, name) for name in same
    )


def pad_window(window: np.ndarray, length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """`window` zero-padded along time to `length`, with its attention mask; a window of full length is returned as it
    is (a view, not a copy)."""
    frames = window.shape[-1]
    if length is None or frames >= length:
        return window, np.ones(frames, dtype=np.int64)
    values = np.zeros((*window.shape[:-1], length), dtype=window.dtype)
    values[..., :frames] = window
    mask = np.zeros(length, dtype=np.int64)
    mask[:frames] = 1
    return values, mask


def sample_from_row(
    row: dict,
    processor: FmriProcessor,
    generator: np.random.Generator,
    crop: str,
    subject_ids: dict[str, int],
    phenotype_columns: list[str],
    checked: bool = False,
    dtype=np.float32,
) -> dict:
    """One training sample: a window of the row's array (cut as `processor` cuts it), with its metadata.

    Unless `checked` (rows of a validated Arrow cache, see `build_arrow_cache`), the row goes through
    `processor.prepare` first (finite values, layout, TR). The window is a read-only view of the row when it has its full
    length and `dtype` (`None`: the stored dtype) is the stored one; only a shorter window is copied, to pad it.
    """
    data, repetition_time = decode_array(row, dtype=None), float(row["repetition_time"])
    if not checked:
        series = processor.prepare(FmriSeries(data, repetition_time, source=row["source"]))
        data, repetition_time = series.data, float(series.repetition_time)
    data = data.astype(dtype or row["dtype"], copy=False)
    values, mask = pad_window(processor.crop_window(data, crop, generator), processor.window_length)
    sample = {
        "fmri_values": values,
        "attention_mask": mask,
        "repetition_time": repetition_time,
        "subject_id": subject_ids[row["subject"]],
    }
    for name in ("subject", "session", "modality", "task", "scan_index", "window_start"):
        sample[name] = row[name]
    for name in phenotype_columns:
        sample[name] = row[name]
    return sample


def _batch_buffer(shape: tuple[int, ...], dtype) -> torch.Tensor:
    """An uninitialised batch tensor. In the main process over a numpy allocation (numpy asks the kernel for huge
    pages, which made filling a fresh 30 MB batch 3× faster than `torch.empty`); in a DataLoader worker in shared
    memory, as torch's default collate allocates it, so handing the batch to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.from_numpy(np.empty(shape, dtype=dtype))
    kind = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    storage = torch.empty(0, dtype=kind)._typed_storage()._new_shared(int(np.prod(shape)), device="cpu")
    return torch.empty(0, dtype=kind).new(storage).view(shape)


class BufferRing:
    """`slots` batches' buffers, handed out in turn and reused: a DataLoader worker that collates into them sends the
    main process the same few shared-memory blocks again and again, which torch maps once, instead of a fresh block
    per batch that the kernel must zero and map page by page (torch's own ceiling for fresh 6.5 MB batches on 2
    workers was about 4,000–7,000 views/s here; `bench/train_throughput.py --data-only`).

    Each batch (`next_batch`) takes the next slot; `take` hands out that slot's buffer of the asked shape and dtype,
    the one it held for its previous batch when that matches, else a new one. A slot keeps only the buffers of its
    last batch, so batches of changing shapes (whole scans of different lengths, the short last batch of an epoch)
    hold at most `slots` batches' memory. A buffer is overwritten `slots` batches later from the same worker; see
    `fmri_loader` for how many that leaves the consumer.
    """

    def __init__(self, slots: int):
        self.slots = int(slots)
        self._held: list[dict[tuple, torch.Tensor]] = [{} for _ in range(self.slots)]
        self._turn = -1
        self._previous: dict[tuple, torch.Tensor] = {}

    def next_batch(self) -> None:
        self._turn = (self._turn + 1) % self.slots
        self._previous, self._held[self._turn] = self._held[self._turn], {}

    def take(self, shape: tuple[int, ...], dtype) -> torch.Tensor:
        key = (tuple(shape), np.dtype(dtype).str)
        buffer = self._previous.pop(key, None)
        if buffer is None:
            buffer = _batch_buffer(shape, dtype)
        self._held[self._turn][key] = buffer
        return buffer


def collate_fmri(samples: list[dict], ring: BufferRing | None = None) -> dict:
    """Stack samples into model inputs, padding time to the longest with `attention_mask = 0` (never tiling).

    The batch is built in one pass: when every window has the batch's length (the usual case with a `window_length`),
    one `np.stack` writes them into the batch buffer; otherwise each is copied into its slot and zero-padded. With a
    `ring`, the values and the mask are written into its reused buffers instead of fresh ones.
    """
    arrays = [s["fmri_values"] for s in samples]
    masks = [s["attention_mask"] for s in samples]
    lengths = [array.shape[-1] for array in arrays]
    longest = max(lengths)
    dtype = np.result_type(*arrays)
    shape = (len(arrays), *arrays[0].shape[:-1], longest)
    if ring is not None:
        ring.next_batch()
    take = _batch_buffer if ring is None else ring.take
    tensor, mask_tensor = take(shape, dtype), take((len(arrays), longest), np.int64)
    values, mask = tensor.numpy(), mask_tensor.numpy()
    if min(lengths) == longest:
        np.stack(arrays, out=values)
        np.stack(masks, out=mask)
    else:
        for index, (array, row_mask) in enumerate(zip(arrays, masks)):
            values[index, ..., : lengths[index]] = array
            values[index, ..., lengths[index] :] = 0
            mask[index, : lengths[index]] = row_mask
            mask[index, lengths[index] :] = 0
    batch = {
        "fmri_values": tensor,
        "attention_mask": mask_tensor,
        "repetition_time": torch.tensor([s["repetition_time"] for s in samples], dtype=torch.float32),
        "subject_ids": torch.tensor([s["subject_id"] for s in samples], dtype=torch.long),
    }
    for key in samples[0]:
        if key not in batch and key not in ("fmri_values", "attention_mask", "repetition_time", "subject_id"):
            batch[key] = [s[key] for s in samples]
    return batch


# ------------------------------------------------------------------------------------------ the Arrow cache
ARROW_DIR = "arrow"
ARROW_FORMAT = "r2tnet-arrow-cache/1"
SOURCES = ("auto", "arrow", "parquet")


def arrow_cache_files(shards: ShardFolder) -> list[Path] | None:
    """The memory-mapped Arrow copies of a folder's shards (`arrow/`), or `None` when there are none or they are stale.

    `arrow/index.json` records, per shard, the Parquet file it was built from with that file's sha256 and rows as
    manifest.json lists them, and the Arrow file's size; the cache is used only when all of it matches (a reconverted
    folder, a replaced shard or a half-built cache is never read).
    """
    folder = shards.folder / ARROW_DIR
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return None
    entries = index.get("shards") if isinstance(index, dict) and index.get("format") == ARROW_FORMAT else None
    if not isinstance(entries, list) or len(entries) != len(shards.summary["shards"]):
        return None
    files = []
    for entry, shard in zip(entries, shards.summary["shards"]):
        if not isinstance(entry, dict) or [entry.get("source"), entry.get("source_sha256"), entry.get("rows")] != [
            shard["file"],
            shard["sha256"],
            shard["rows"],
        ]:
            return None
        name = entry.get("file")
        if not isinstance(name, str) or Path(name).name != name:
            return None
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry.get("bytes"):
            return None
        files.append(path)
    return files


def check_rows(table, processor: FmriProcessor, source: Path, first_row: int = 0) -> None:
    """Check the rows of a shard table once, as `FmriProcessor.validate` checks a scan: the array bytes match shape and
    dtype, the layout is the folder's, every value is finite, the TR is positive. Raises `FmriInputError` naming the
    file and row."""
    dtypes, shapes = table.column("dtype").to_pylist(), table.column("shape").to_pylist()
    trs = table.column("repetition_time").to_numpy(zero_copy_only=False)
    views = _binary_views(table.column("data"))
    layout = 2 if processor.input_type == "roi" else 5
    for index, (kind, shape, view, tr) in enumerate(zip(dtypes, shapes, views, trs)):
        where = f"{source} row {first_row + index}"
        problem = None
        if kind not in ("float16", "float32"):
            problem = ("dtype float16 or float32", f"{kind!r}")
        elif not isinstance(shape, list) or len(shape) != layout or min(shape) < 1:
            problem = (f"a {layout}-D shape, time last", f"{shape!r}")
        elif view.size != np.prod(shape) * np.dtype(kind).itemsize:
            problem = (f"{np.prod(shape) * np.dtype(kind).itemsize} bytes for shape {shape}", f"{view.size} bytes")
        elif processor.input_type == "roi" and processor.num_rois is not None and shape[0] != processor.num_rois:
            problem = (f"{processor.num_rois} ROIs (preprocessor_config.json)", f"{shape[0]}")
        elif processor.input_type == "volume" and processor.volume_shape and shape[:4] != processor.volume_shape:
            problem = (f"volume shape {processor.volume_shape}", f"{shape[:4]}")
        elif not (np.isfinite(tr) and tr > 0):
            problem = ("a repetition time > 0", f"{tr}")
        elif not np.isfinite(view.view(kind)).all():
            problem = ("finite values", f"{int((~np.isfinite(view.view(kind))).sum())} NaN/Inf values")
        if problem:
            raise FmriInputError.for_source(where, expected=problem[0], found=problem[1], hint=RECONVERT)


def build_arrow_cache(shards: ShardFolder) -> list[Path]:
    """Write `arrow/`: each Parquet shard as an uncompressed Arrow IPC stream file that `datasets.Dataset.from_file`
    memory-maps, every row checked once (`check_rows`) on the way, then `arrow/index.json` (see `arrow_cache_files`).
    Every file is written to a temporary name and renamed, the index last, so a killed build is rebuilt, never read.
    Raises `OSError` when the folder cannot be written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..utils import atomic_path, atomic_write_text

    folder = shards.folder / ARROW_DIR
    folder.mkdir(exist_ok=True)
    entries = []
    for shard, parquet in zip(shards.summary["shards"], shards.files):
        name = Path(shard["file"]).with_suffix(".arrow").name
        reader = pq.ParquetFile(parquet, memory_map=True)
        row = 0
        with (
            atomic_path(folder / name) as temporary,
            pa.OSFile(str(temporary), "wb") as sink,
            pa.ipc.new_stream(sink, reader.schema_arrow) as writer,
        ):
            for group in range(reader.num_row_groups):
                table = reader.read_row_group(group)
                check_rows(table, shards.processor, Path(parquet), row)
                writer.write_table(table)
                row += len(table)
        entries.append(
            {
                "file": name,
                "bytes": (folder / name).stat().st_size,
                "rows": row,
                "source": shard["file"],
                "source_sha256": shard["sha256"],
            }
        )
    summary = {"format": ARROW_FORMAT, "shards": entries}
    atomic_write_text(folder / "index.json", json.dumps(summary, indent=1) + "\n")
    return [folder / entry["file"] for entry in entries]


@functools.lru_cache(maxsize=4096)
def _mapped_record_batches(filename: str, size: int, modified_ns: int) -> tuple:
    """The record batches of one Arrow stream file, memory-mapped once per process and kept mapped, as
    `datasets.Dataset.from_file` keeps its table's mapping: the pages a pass touched stay mapped for the next one (a
    fresh mapping every epoch faulted every page in again, which halved the speed of small cached datasets). Keyed by
    size and modification time as well, so a rebuilt file is mapped anew."""
    from datasets.table import _memory_mapped_record_batch_reader_from_file

    return tuple(_memory_mapped_record_batch_reader_from_file(filename))


def _arrow_file_tables(filenames: list[str]):
    """The record batches of memory-mapped Arrow stream files, in order, each as a table (views of the mapping)."""
    import pyarrow as pa

    for filename in filenames:
        status = os.stat(filename)
        for index, batch in enumerate(_mapped_record_batches(filename, status.st_size, status.st_mtime_ns)):
            yield f"{filename}:{index}", pa.Table.from_batches([batch])


def arrow_files_dataset(files: list[Path]):
    """A `datasets.IterableDataset` over the Arrow cache, one `datasets` shard per file: what
    `IterableDataset.from_file` builds for one file, for several. (`Dataset.from_file(...).to_iterable_dataset()`
    reads the same memory mapping, but deep-copies every shard's `Dataset` at the start of every epoch, which took a
    third of an epoch of the 30 MB shards in `bench/stream_throughput.py`.)"""
    from datasets import DatasetInfo, Features, IterableDataset
    from datasets.iterable_dataset import ArrowExamplesIterable
    from datasets.table import read_schema_from_file

    filenames = [str(path) for path in files]
    features = Features.from_arrow_schema(read_schema_from_file(filenames[0]))
    tables = ArrowExamplesIterable(_arrow_file_tables, kwargs={"filenames": filenames})
    return IterableDataset(ex_iterable=tables, info=DatasetInfo(features=features))


def _binary_views(column) -> list[np.ndarray]:
    """Each value of a (large) binary Arrow column as a read-only uint8 view of the column's buffer: no copy."""
    import pyarrow as pa

    views = []
    for chunk in column.chunks:
        _, offsets, data = chunk.buffers()
        kind = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        offsets = np.frombuffer(offsets, dtype=kind)[chunk.offset : chunk.offset + len(chunk) + 1].tolist()
        values = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, dtype=np.uint8)
        views.extend(values[start:end] for start, end in itertools.pairwise(offsets))
    return views


class _Draw:
    """One uniform draw u in [0, 1) standing in for a `numpy.random.Generator` where `FmriProcessor.crop_window` asks
    for a window start: `integers(low, high)` is `low + floor(u · (high - low))`."""

    __slots__ = ("u",)

    def __init__(self, u: float):
        self.u = float(u)

    def integers(self, low: int, high: int) -> int:
        return low + min(int(self.u * (high - low)), high - low - 1)


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class FmriStream(torch.utils.data.IterableDataset):
    """Stream training samples (or whole batches) from a shard folder, resumably.

    Rows are read through a `datasets.IterableDataset` built once per process: from the folder's memory-mapped Arrow
    cache (`arrow/`, built and checked on first use, see `build_arrow_cache`; one `datasets` shard per file,
    `arrow_files_dataset`), or from the Parquet shards with `load_dataset("parquet", streaming=True)`.
    Blocks of rows come as Arrow tables; a row's array is a view of the block's buffer, and a window of full length
    is a view of the row, so the only copy of the data is into the batch. Rows from the Arrow cache were checked when
    it was built; rows streamed from Parquet go through the processor's checks.

    Args:
        folder: a folder written by `r2tnet convert`.
        processor (`FmriProcessor`, *optional*): what turns a row into a sample; defaults to `window_processor` (the
            folder's processor with `window_length` and `crop`, and no second normalisation).
        subjects (*optional*): keep only these subjects (e.g. one split); other rows are skipped, not yielded.
        modalities (*optional*): keep only rows of these modalities (e.g. `["rest"]`).
        window_length (`int`, *optional*): frames per sample; `None` yields whole rows.
        crop (`str`, defaults to `"random"`): where windows are cut (`random`, `start`, `center`).
        shuffle_buffer (`int`, defaults to 64): rows per shuffled block (counted before the subject and modality
            filters).
        seed (`int`, defaults to 0): seed of the shard order, the block permutations and the windows.
        rank, world_size (*optional*): this process's slice; default from `torch.distributed`. With a shard count that
            is a multiple of `world_size`, processes get whole shards; otherwise rows are dealt one by one. The slices
            are disjoint and cover every row. In DataLoader workers, each worker streams its own part of the slice.
        batch_size (`int`, *optional*): yield batches of this many samples, collated (`collate_fmri`) in the stream
            (read them with `fmri_loader`, or `DataLoader(stream, batch_size=None)`), instead of single samples; the
            last batch of an epoch may be smaller.
        source (`str`, defaults to `"auto"`): `"arrow"` (the cache, built when missing or stale), `"parquet"` (stream
            the Parquet shards, as from the Hub), or `"auto"`: the cache, unless it cannot be written here.
        dtype (defaults to `float32`): dtype of `fmri_values`; `None` keeps the stored one (e.g. float16 from
            `convert --dtype float16`, half the bytes to move to an accelerator; cast there).
        buffer_slots (`int`, defaults to 0): with `batch_size`, collate into a `BufferRing` of this many reused
            buffers per batch shape (0: a fresh buffer per batch). A batch is then overwritten `buffer_slots` batches
            later: use `fmri_loader`, which sizes the ring for its DataLoader and says how long a batch stays valid.

    Exact mid-epoch resume. A shuffle buffer whose content is not saved cannot resume exactly (datasets warns about it).
    This stream shuffles in a way whose state is small and deterministic instead: the shard order is a seeded
    permutation per epoch (the `datasets` epoch, set from (seed, epoch)), and rows are read in blocks of
    `shuffle_buffer` that are permuted with a seed derived from (seed, epoch, block). The state is the `datasets` stream
    position at the start of the current block plus the offset inside it; random windows are drawn from a generator
    seeded per position. Restoring it continues with exactly the samples an uninterrupted run would have produced.
    (Exactness holds when the stream is iterated in the process that saves the state, i.e. `num_workers=0`.)
    """

    def __init__(
        self,
        folder,
        processor: FmriProcessor | None = None,
        subjects=None,
        window_length: int | None = None,
        crop: str = "random",
        shuffle_buffer: int = 64,
        modalities=None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        batch_size: int | None = None,
        source: str = "auto",
        dtype=np.float32,
        buffer_slots: int = 0,
    ):
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        self.shards = folder if isinstance(folder, ShardFolder) else ShardFolder(folder)
        self.processor = processor or window_processor(self.shards, window_length, crop)
        self.subjects = None if subjects is None else frozenset(subjects)
        self.modalities = None if modalities is None else frozenset(modalities)
        self.crop, self.shuffle_buffer, self.seed = crop, max(1, int(shuffle_buffer)), seed
        self.batch_size = None if batch_size is None else max(1, int(batch_size))
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.buffer_slots = max(0, int(buffer_slots))
        default_rank, default_world = _world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.source, self.arrow_files = self._choose_source(source)
        self._checked = self.source == "arrow" and not _rows_need_checks(self.processor, self.shards.processor)
        self._datasets: dict[tuple[int, int], object] = {}
        self.epoch = 0
        self._position = self._start(0)

    def _choose_source(self, source: str) -> tuple[str, list[Path] | None]:
        if source == "parquet":
            return "parquet", None
        files = arrow_cache_files(self.shards)
        if files is None:
            try:
                files = build_arrow_cache(self.shards)
            except OSError as error:
                if source == "arrow":
                    raise
                logger.info(f"{self.shards.folder}: no Arrow cache ({error}); streaming the Parquet shards")
                return "parquet", None
        return "arrow", files

    def _start(self, epoch: int) -> dict:
        return {"epoch": epoch, "dataset": None, "block": 0, "offset": 0, "source": self.source}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._position = self._start(epoch)

    def state_dict(self) -> dict:
        """Where the stream stands: restore it with `load_state_dict` to continue with the next sample."""
        return copy.deepcopy(self._position)

    def load_state_dict(self, state: dict) -> None:
        if state.get("source", self.source) != self.source:
            raise ValueError(
                f"a state saved while streaming from {state['source']} cannot resume a stream from {self.source}: "
                f"pass source={state['source']!r}"
            )
        self._position = {**copy.deepcopy(state), "source": self.source}
        self.epoch = state["epoch"]

    @staticmethod
    def _handed_over(batch: dict, ring: BufferRing | None) -> dict:
        """A batch as a DataLoader worker hands it to the training process: with reused buffers, the small per-row
        tensors travel as numpy arrays, pickled by value (each tensor would cost a shared-memory block and a file
        descriptor passed per batch, which cut the transfer's ceiling from about 30,000 to 13,000 views/s here);
        `FmriLoader` turns them back into tensors. In the training process itself, the batch is unchanged."""
        if ring is None or torch.utils.data.get_worker_info() is None:
            return batch
        small = ("attention_mask", "repetition_time", "subject_ids")
        return {key: value.numpy() if key in small else value for key, value in batch.items()}

    def _buffer_ring(self) -> BufferRing | None:
        """This process's ring of batch buffers (kept across epochs; never one inherited from the parent of a forked
        DataLoader worker, whose buffers other workers share), or None without `buffer_slots`."""
        if not (self.buffer_slots and self.batch_size):
            return None
        ring = getattr(self, "_ring", None)
        if ring is None or ring[0] != os.getpid() or ring[1].slots != self.buffer_slots:
            self._ring = ring = (os.getpid(), BufferRing(self.buffer_slots))
        return ring[1]

    def rows_dataset(self, rank: int, world_size: int):
        """The `datasets.IterableDataset` of one slice of the rows, in Arrow format; built once per process."""
        key = (rank, world_size)
        if key not in self._datasets:
            from datasets.distributed import split_dataset_by_node

            if self.source == "arrow":
                dataset = arrow_files_dataset(self.arrow_files)
            else:
                from datasets import load_dataset

                dataset = load_dataset("parquet", data_files=self.shards.files, streaming=True, split="train")
            if world_size > 1:
                dataset = split_dataset_by_node(dataset, rank=rank, world_size=world_size)
            self._datasets[key] = dataset.with_format("arrow")
        return self._datasets[key]

    def _dataset_epoch(self, epoch: int) -> int:
        """The `datasets` epoch (never 0, which keeps the shard order) that seeds the shard order of `epoch`."""
        return 1 + int(_seed(self.seed, epoch, 0xF11E5).integers(2**31 - 2))

    def _block_rows(self, table) -> list[dict]:
        """The rows of one block that pass the subject and modality filters, as dicts whose `data` is a view."""
        keep = np.ones(len(table), dtype=bool)
        for column, wanted in (("subject", self.subjects), ("modality", self.modalities)):
            if wanted is not None:
                keep &= np.isin(np.asarray(table.column(column).to_pylist(), dtype=object), list(wanted))
        chosen = np.flatnonzero(keep).tolist()
        if not chosen:
            return []
        names = [*METADATA_COLUMNS, "shape", "dtype", *self.shards.phenotype_columns]
        columns = {name: table.column(name).to_pylist() for name in names}
        views = _binary_views(table.column("data"))
        return [{"data": views[i], **{name: values[i] for name, values in columns.items()}} for i in chosen]

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        rank, world_size = self.rank * workers + worker_id, self.world_size * workers
        position = self._position
        epoch = position["epoch"]
        dataset = self.rows_dataset(rank, world_size)
        dataset.set_epoch(self._dataset_epoch(epoch))
        dataset.load_state_dict(position["dataset"])  # None: from the start of the epoch
        block, skip, block_state = position["block"], position["offset"], position["dataset"]
        salt = () if workers == 1 else (rank,)  # workers of one process draw their own windows
        ring = self._buffer_ring()
        pending: list[dict] = []
        for table in dataset.iter(batch_size=self.shuffle_buffer):
            rows = self._block_rows(table)
            order = _seed(self.seed, epoch, block, 0xB10C).permutation(len(rows))
            # one uniform draw per position of the block places its random window (seeding a generator per row cost
            # a fifth of the stream's time in a profile); a function of (seed, epoch, block, offset), so resume stays
            # exact
            draws = _seed(self.seed, epoch, block, 0x5EED, *salt).random(len(rows)) if self.crop == "random" else None
            for offset in range(skip, len(rows)):
                row = rows[order[offset]]
                sample = sample_from_row(
                    row, self.processor, None if draws is None else _Draw(draws[offset]), self.crop,
                    self.shards.subject_ids, self.shards.phenotype_columns, checked=self._checked, dtype=self.dtype,
                )  # fmt: skip
                self._position = {
                    "epoch": epoch, "dataset": block_state, "block": block, "offset": offset + 1, "source": self.source
                }  # fmt: skip
                if self.batch_size is None:
                    yield sample
                    continue
                pending.append(sample)
                if len(pending) == self.batch_size:
                    yield self._handed_over(collate_fmri(pending, ring), ring)
                    pending = []
            block, skip, block_state = block + 1, 0, dataset.state_dict()
        if pending:
            yield self._handed_over(collate_fmri(pending, ring), ring)
        self.set_epoch(epoch + 1)


class FmriLoader(torch.utils.data.DataLoader):
    """The `DataLoader` that `fmri_loader` returns: every batch's small per-row fields, which its workers hand over as
    numpy arrays (`FmriStream._handed_over`), as tensors again."""

    def __iter__(self):
        for batch in super().__iter__():
            yield {
                key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value for key, value in batch.items()
            }


def fmri_loader(stream: FmriStream, num_workers: int = 2, prefetch_factor: int = 2, **kwargs) -> FmriLoader:
    """A `DataLoader` over a batched `FmriStream` that can feed an accelerator: `num_workers` processes cut and
    collate whole batches into a ring of reused shared-memory buffers (`BufferRing`), so handing a batch to the
    training process copies nothing and allocates nothing after the first few batches.

    The ring has `prefetch_factor + 2` buffers per worker, so the last `2 × max(1, num_workers)` batches the loader
    yielded are never overwritten: a training step that uses a batch (or copies it to the device) before it asks for
    the next one, and keeps at most the previous one, is safe. To keep batches longer, `.clone()` them (or build the
    DataLoader yourself on a stream without `buffer_slots`). `pin_memory=True` copies every batch out of the ring.

    Mid-epoch resume is exact only without workers (`num_workers=0`, see `FmriStream`).
    """
    if stream.batch_size is None:
        raise ValueError("fmri_loader needs a batched stream: FmriStream(..., batch_size=N)")
    stream.buffer_slots = prefetch_factor + 2
    options = {"prefetch_factor": prefetch_factor, "persistent_workers": True} if num_workers else {}
    options.update(kwargs)
    # the batches are collated already: no per-element `default_convert` pass over their metadata lists
    options.setdefault("collate_fn", _as_collated)
    return FmriLoader(stream, batch_size=None, num_workers=num_workers, **options)


def _as_collated(batch: dict) -> dict:
    return batch
