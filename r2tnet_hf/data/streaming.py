"""Reading shards back: a resumable stream for training, random row access, and batching.

`FmriStream` streams rows with `datasets.load_dataset("parquet", ..., streaming=True)`, splits them across processes
with `split_dataset_by_node`, shuffles, and cuts random temporal windows through the dataset's `FmriProcessor`.

Exact mid-epoch resume. A shuffle buffer whose content is not saved cannot resume exactly (datasets warns about it).
This stream shuffles in a way whose state is small and deterministic instead: the shard order is a seeded
permutation per epoch, and rows are read in blocks of `shuffle_buffer` that are permuted with a seed derived from
(seed, epoch, block). The state is the `datasets` stream position at the start of the current block plus the offset
inside it; random windows are drawn from a generator seeded per row. Restoring it continues with exactly the rows
and windows an uninterrupted run would have produced. (Exactness holds when the stream is iterated in the process
that saves the state, i.e. `num_workers=0`.)
"""

from __future__ import annotations

import copy
import functools
import os
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from ..errors import FmriInputError
from ..processing import FmriProcessor
from .io import FmriSeries
from .manifest import ScanRecord
from .shards import FORMAT, METADATA_COLUMNS


def _seed(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) & 0xFFFFFFFF for p in parts])


def decode_array(row: dict) -> np.ndarray:
    """The row's array as float32, time last: a read-only view of the row's bytes when they are float32 already."""
    return np.frombuffer(row["data"], dtype=row["dtype"]).reshape(row["shape"]).astype(np.float32, copy=False)


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


def sample_from_row(
    row: dict,
    processor: FmriProcessor,
    generator: np.random.Generator,
    crop: str,
    subject_ids: dict[str, int],
    phenotype_columns: list[str],
) -> dict:
    """One training sample: a window of the row's array through the processor, with its metadata."""
    series = FmriSeries(decode_array(row), float(row["repetition_time"]), source=row["source"])
    batch = processor(series, crop=crop, generator=generator, return_tensors="np")
    sample = {
        "fmri_values": batch["fmri_values"][0],
        "attention_mask": batch["attention_mask"][0],
        "repetition_time": float(batch["repetition_time"][0]),
        "subject_id": subject_ids[row["subject"]],
    }
    for name in ("subject", "session", "modality", "task", "scan_index", "window_start"):
        sample[name] = row[name]
    for name in phenotype_columns:
        sample[name] = row[name]
    return sample


def collate_fmri(samples: list[dict]) -> dict:
    """Stack samples into model inputs, padding time to the longest with `attention_mask = 0` (never tiling)."""
    longest = max(s["fmri_values"].shape[-1] for s in samples)
    values = np.zeros((len(samples), *samples[0]["fmri_values"].shape[:-1], longest), dtype=np.float32)
    mask = np.zeros((len(samples), longest), dtype=np.int64)
    for index, sample in enumerate(samples):
        length = sample["fmri_values"].shape[-1]
        values[index, ..., :length] = sample["fmri_values"]
        mask[index, :length] = sample["attention_mask"]
    batch = {
        "fmri_values": torch.from_numpy(values),
        "attention_mask": torch.from_numpy(mask),
        "repetition_time": torch.tensor([s["repetition_time"] for s in samples], dtype=torch.float32),
        "subject_ids": torch.tensor([s["subject_id"] for s in samples], dtype=torch.long),
    }
    for key in samples[0]:
        if key not in batch and key not in ("fmri_values", "attention_mask", "repetition_time", "subject_id"):
            batch[key] = [s[key] for s in samples]
    return batch


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class FmriStream(torch.utils.data.IterableDataset):
    """Stream training samples from a shard folder, resumably.

    Args:
        folder: a folder written by `r2tnet convert`.
        processor (`FmriProcessor`, *optional*): what turns a row into a sample; defaults to `window_processor` (the
            folder's processor with `window_length` and `crop`, and no second normalisation).
        subjects (*optional*): keep only these subjects (e.g. one split); other rows are skipped, not yielded.
        modalities (*optional*): keep only rows of these modalities (e.g. `["rest"]`).
        window_length (`int`, *optional*): frames per sample; `None` yields whole rows.
        crop (`str`, defaults to `"random"`): where windows are cut (`random`, `start`, `center`).
        shuffle_buffer (`int`, defaults to 64): rows per shuffled block.
        seed (`int`, defaults to 0): seed of the shard order, the block permutations and the windows.
        rank, world_size (*optional*): this process's slice; default from `torch.distributed`. With a shard count that
            is a multiple of `world_size`, processes get whole shards; otherwise rows are dealt one by one. The slices
            are disjoint and cover every row.
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
    ):
        super().__init__()
        self.shards = folder if isinstance(folder, ShardFolder) else ShardFolder(folder)
        self.processor = processor or window_processor(self.shards, window_length, crop)
        self.subjects = None if subjects is None else frozenset(subjects)
        self.modalities = None if modalities is None else frozenset(modalities)
        self.crop, self.shuffle_buffer, self.seed = crop, max(1, int(shuffle_buffer)), seed
        default_rank, default_world = _world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.epoch = 0
        self._position = {"epoch": 0, "dataset": None, "block": 0, "offset": 0}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._position = {"epoch": epoch, "dataset": None, "block": 0, "offset": 0}

    def state_dict(self) -> dict:
        """Where the stream stands: restore it with `load_state_dict` to continue with the next sample."""
        return copy.deepcopy(self._position)

    def load_state_dict(self, state: dict) -> None:
        self._position = copy.deepcopy(state)
        self.epoch = state["epoch"]

    def epoch_files(self, epoch: int) -> list[str]:
        order = _seed(self.seed, epoch, 0xF11E5).permutation(len(self.shards.files))
        return [self.shards.files[i] for i in order]

    def _dataset(self, epoch: int):
        from datasets import load_dataset
        from datasets.distributed import split_dataset_by_node

        dataset = load_dataset("parquet", data_files=self.epoch_files(epoch), streaming=True, split="train")
        if self.world_size > 1:
            dataset = split_dataset_by_node(dataset, rank=self.rank, world_size=self.world_size)
        if self.subjects is not None or self.modalities is not None:
            subjects, modalities = self.subjects, self.modalities
            dataset = dataset.filter(
                lambda row: (
                    (subjects is None or row["subject"] in subjects)
                    and (modalities is None or row["modality"] in modalities)
                )
            )
        return dataset

    def __iter__(self):
        position = self._position
        epoch = position["epoch"]
        dataset = self._dataset(epoch)
        if position["dataset"] is not None:
            dataset.load_state_dict(position["dataset"])
        rows = iter(dataset)
        block, skip = position["block"], position["offset"]
        while True:
            block_state = copy.deepcopy(dataset.state_dict())
            rows_in_block = list(islice(rows, self.shuffle_buffer))
            if not rows_in_block:
                break
            order = _seed(self.seed, epoch, block, 0xB10C).permutation(len(rows_in_block))
            for offset in range(skip, len(rows_in_block)):
                row = rows_in_block[order[offset]]
                generator = _seed(self.seed, epoch, block, offset, 0x5EED)
                sample = sample_from_row(
                    row, self.processor, generator, self.crop, self.shards.subject_ids, self.shards.phenotype_columns
                )
                self._position = {"epoch": epoch, "dataset": block_state, "block": block, "offset": offset + 1}
                yield sample
            block, skip = block + 1, 0
        self.set_epoch(epoch + 1)
