from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from r2tnet_hf.data.manifest import read_manifest
from r2tnet_hf.data.pairs import PairSampler
from r2tnet_hf.data.shards import ConvertOptions, convert
from r2tnet_hf.data.splits import check_disjoint, load_splits, make_splits, save_splits, splits_from_manifest
from r2tnet_hf.data.streaming import BufferRing, FmriStream, ShardFolder, collate_fmri, fmri_loader
from r2tnet_hf.data.synthetic import make_synthetic_cohort
from r2tnet_hf.errors import FmriInputError


@pytest.fixture(scope="module")
def shard_folder(synthetic_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    convert(synthetic_cohort / "manifest.tsv", out, ConvertOptions(shard_size_mb=0.012), progress=False)
    folder = ShardFolder(out)
    assert len(folder.files) == 8, "these tests want 8 shards (a multiple of 2 ranks)"
    return folder


def key(sample):
    return (sample["scan_index"], float(sample["fmri_values"][0, 0]))


# Every stream test runs on both read paths: the memory-mapped Arrow cache and the Parquet shards.
both_sources = pytest.mark.parametrize("source", ["arrow", "parquet"])


@both_sources
def test_stream_yields_every_row_once_with_windows(shard_folder, source):
    stream = FmriStream(shard_folder, window_length=40, shuffle_buffer=5, seed=1, source=source)
    assert stream.source == source
    samples = list(stream)
    assert sorted(s["scan_index"] for s in samples) == list(range(24))
    assert all(s["fmri_values"].shape == (12, 40) and s["attention_mask"].sum() == 40 for s in samples)
    assert stream.epoch == 1
    second_epoch = [s["scan_index"] for s in stream]
    assert sorted(second_epoch) == list(range(24)) and second_epoch != [s["scan_index"] for s in samples]
    batch = collate_fmri(samples[:4])
    assert batch["fmri_values"].shape == (4, 12, 40) and batch["subject_ids"].dtype == torch.long


@both_sources
def test_two_ranks_are_disjoint_and_cover_all_rows(shard_folder, source):
    ranks = [
        list(FmriStream(shard_folder, rank=r, world_size=2, seed=2, shuffle_buffer=4, source=source)) for r in (0, 1)
    ]
    first, second = ({s["scan_index"] for s in rows} for rows in ranks)
    assert not first & second and first | second == set(range(24))


@both_sources
def test_rank_split_by_rows_when_shards_do_not_divide(synthetic_cohort, tmp_path, source):
    out = tmp_path / "three"
    convert(synthetic_cohort / "manifest.tsv", out, ConvertOptions(shard_size_mb=0.035), progress=False)
    folder = ShardFolder(out)
    assert len(folder.files) % 2 == 1
    ranks = [FmriStream(folder, rank=r, world_size=2, source=source) for r in (0, 1)]
    first, second = ({s["scan_index"] for s in stream} for stream in ranks)
    assert not first & second and first | second == set(range(24))


@both_sources
@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_continues_exactly(shard_folder, source, world_size):
    def stream():
        return FmriStream(
            shard_folder, window_length=32, shuffle_buffer=5, seed=4, source=source, world_size=world_size
        )

    straight = [key(s) for s in stream()]
    second_epoch = [key(s) for s in _at_epoch(stream(), 1)]
    running = stream()
    head = []
    for sample in running:
        head.append(key(sample))
        if len(head) == (11 if world_size == 1 else 7):  # in the middle of the third (second) block
            break
    state = running.state_dict()
    resumed = stream()
    resumed.load_state_dict(state)
    tail = [key(s) for s in resumed]
    assert head + tail == straight
    assert [key(s) for s in resumed] == second_epoch  # the next epoch as an uninterrupted run's
    resumed.set_epoch(0)  # a stream that resumed mid-epoch replays a whole epoch from its start
    assert [key(s) for s in resumed] == straight


def _at_epoch(stream, epoch):
    stream.set_epoch(epoch)
    return stream


@both_sources
def test_batches_are_the_samples_collated_and_resume_exactly(shard_folder, source):
    def stream(**kwargs):
        return FmriStream(shard_folder, window_length=32, shuffle_buffer=5, seed=4, source=source, **kwargs)

    samples = list(stream())
    batches = list(stream(batch_size=7))
    assert [len(b["subject"]) for b in batches] == [7, 7, 7, 3]  # the last batch of the epoch is the rest
    for number, batch in enumerate(batches):
        expected = collate_fmri(samples[7 * number : 7 * number + 7])
        assert batch.keys() == expected.keys()
        for name, value in expected.items():
            if torch.is_tensor(value):
                assert torch.equal(batch[name], value), name
            else:
                assert batch[name] == value, name
    running = stream(batch_size=7)
    iterator = iter(running)
    next(iterator), next(iterator)
    resumed = stream(batch_size=7)
    resumed.load_state_dict(running.state_dict())
    for got, expected in zip(resumed, batches[2:], strict=True):
        assert torch.equal(got["fmri_values"], expected["fmri_values"])


@both_sources
def test_subject_filter(shard_folder, source):
    subjects = {"sub-001", "sub-004"}
    samples = list(FmriStream(shard_folder, subjects=subjects, source=source))
    assert {s["subject"] for s in samples} == subjects and len(samples) == 8
    rest = list(FmriStream(shard_folder, subjects=subjects, modalities=["rest"], source=source))
    assert {s["modality"] for s in rest} == {"rest"} and len(rest) == 4


def test_both_sources_read_the_same_rows(shard_folder):
    def rows(source):
        stream = FmriStream(shard_folder, crop="start", source=source, dtype=None)
        return {(s["scan_index"], s["window_start"]): s for s in stream}

    arrow, parquet = rows("arrow"), rows("parquet")
    assert arrow.keys() == parquet.keys() and len(arrow) == 24
    for index, sample in arrow.items():
        assert sample["fmri_values"].dtype == np.float32 and not sample["fmri_values"].flags.writeable  # a view
        np.testing.assert_array_equal(sample["fmri_values"], parquet[index]["fmri_values"])
        assert sample["subject"] == parquet[index]["subject"]


def test_a_dataloader_with_two_workers_reads_every_row_once(shard_folder):
    stream = FmriStream(shard_folder, window_length=32, shuffle_buffer=5, seed=3, batch_size=4, dtype=None)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    scans = [s for batch in loader for s in batch["scan_index"]]
    assert sorted(scans) == list(range(24))


def _window_of_its_row(shard_folder, values, scan_index) -> bool:
    """Whether `values` [V, L] is a window of the stored row of that scan (at some start)."""
    (rows,) = [rows for record, rows in shard_folder.scans() if record.index == scan_index]
    row = shard_folder.read_scan(rows).data.astype(values.dtype)
    length = values.shape[-1]
    return any(np.array_equal(row[:, s : s + length], values) for s in range(row.shape[-1] - length + 1))


@pytest.mark.parametrize("workers", [0, 2])
def test_fmri_loader_hands_over_whole_batches_that_stay_valid_as_documented(shard_folder, workers):
    stream = FmriStream(shard_folder, window_length=32, shuffle_buffer=5, seed=3, batch_size=4, dtype=None)
    loader = fmri_loader(stream, num_workers=workers)
    kept = 2 * max(1, workers)  # the batches fmri_loader promises are not overwritten yet
    held: list[tuple[dict, torch.Tensor]] = []
    scans, pointers = [], set()
    for _ in range(2):  # two epochs: the ring carries over
        for batch in loader:
            assert all(torch.is_tensor(batch[k]) for k in ("fmri_values", "attention_mask", "repetition_time"))
            assert batch["subject_ids"].dtype == torch.long and batch["attention_mask"].shape == (
                len(batch["subject"]),
                32,
            )
            held.append((batch, batch["fmri_values"].clone()))
            held = held[-kept:]
            for old, copy in held:  # nothing held within the promise was overwritten by a later batch
                assert torch.equal(old["fmri_values"], copy)
            scans += batch["scan_index"]
            pointers.add(batch["fmri_values"].data_ptr() if workers == 0 else None)
            for values, scan in zip(batch["fmri_values"].numpy(), batch["scan_index"]):
                assert _window_of_its_row(shard_folder, values, scan)
    assert sorted(scans) == sorted(list(range(24)) * 2)
    if workers == 0:  # in one process the batches are the ring's buffers, reused
        assert len(pointers) <= stream.buffer_slots + 1  # + the last, smaller batch of an epoch


def test_buffer_ring_reuses_a_slot_only_after_its_turn_and_holds_at_most_its_slots():
    ring = BufferRing(3)
    pointers = []
    for length in [10, 10, 10, 10, 12, 12, 10, 11, 13, 14, 15, 16]:  # whole scans of changing lengths
        ring.next_batch()
        values = ring.take((2, 4, length), np.float32)
        assert values.shape == (2, 4, length) and ring.take((2, length), np.int64).shape == (2, length)
        pointers.append(values.data_ptr())
    assert pointers[3] == pointers[0] and len(set(pointers[:3])) == 3  # same shape: the slot's buffer again
    held = [buffer for slot in ring._held for buffer in slot.values()]
    assert len(held) == 3 * 2  # values and mask of the last 3 batches, not one pair per length ever seen


def test_fmri_loader_in_process_yields_what_the_stream_yields(shard_folder):
    def stream(**kwargs):
        return FmriStream(shard_folder, window_length=32, shuffle_buffer=5, seed=4, batch_size=5, **kwargs)

    expected = list(stream())
    got = [{k: v.clone() if torch.is_tensor(v) else v for k, v in b.items()} for b in fmri_loader(stream(), 0)]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]) if torch.is_tensor(a[name]) else a[name] == b[name], name
    with pytest.raises(ValueError, match="batch_size"):
        fmri_loader(FmriStream(shard_folder), 0)


def test_the_arrow_cache_is_checked_rebuilt_when_stale_and_optional(synthetic_cohort, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from r2tnet_hf.data import streaming

    out = tmp_path / "shards"
    convert(synthetic_cohort / "manifest.tsv", out, ConvertOptions(shard_size_mb=0.035), progress=False)
    folder = ShardFolder(out)
    assert streaming.arrow_cache_files(folder) is None
    files = FmriStream(folder).arrow_files
    assert [f.name for f in files] == [Path(f).with_suffix(".arrow").name for f in folder.files]
    assert streaming.arrow_cache_files(folder) == files
    assert not list((out / "arrow").glob(".*.tmp"))
    # an Arrow file of another size than recorded (a killed or tampered copy) makes the cache stale: rebuilt
    with open(files[0], "ab") as handle:
        handle.write(b"x")
    assert streaming.arrow_cache_files(folder) is None
    assert FmriStream(folder, source="arrow").source == "arrow" and streaming.arrow_cache_files(folder) == files
    # a folder where the cache cannot be written streams Parquet (auto), and says why when the cache is asked for
    monkeypatch.setattr(streaming, "build_arrow_cache", _unwritable)
    (out / "arrow" / "index.json").unlink()
    assert FmriStream(folder).source == "parquet"
    with pytest.raises(PermissionError):
        FmriStream(folder, source="arrow")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="source must be one of"):
        FmriStream(folder, source="hdf5")
    # rows are checked once, when the cache is built: a NaN in a shard is named with its file and row
    table = pq.read_table(folder.files[1])
    data = table.column("data").to_pylist()
    broken = np.frombuffer(data[1], dtype=np.float32).copy()
    broken[3] = np.nan
    data[1] = broken.tobytes()
    table = table.set_column(table.schema.get_field_index("data"), "data", pa.array(data, type=pa.binary()))
    pq.write_table(table, folder.files[1])
    with pytest.raises(FmriInputError, match=r"shard-00001.parquet row 1: expected finite values, found 1 NaN/Inf"):
        streaming.build_arrow_cache(folder)


def _unwritable(shards):
    raise PermissionError(13, "Permission denied", str(shards.folder / "arrow"))


@pytest.mark.parametrize("positives", ["cross_modality", "cross_session", "same_scan"])
def test_pair_sampler_positives(shard_folder, positives):
    sampler = PairSampler(shard_folder, positives=positives, subjects_per_batch=3, window_length=32, seed=5)
    batches = list(sampler)
    assert len(batches) == 2
    seen = Counter()
    for batch in batches:
        assert batch["fmri_values"].shape == batch["paired_fmri_values"].shape == (3, 12, 32)
        assert len(set(batch["subject"])) == 3  # one pair per subject: the others are negatives
        for i, subject in enumerate(batch["subject"]):
            seen[subject] += 1
            same_scan = batch["scan_index"][i] == batch["paired_scan_index"][i]
            if positives == "cross_modality":
                assert batch["modality"][i] != batch["paired_modality"][i] and not same_scan
            elif positives == "cross_session":
                assert batch["session"][i] != batch["paired_session"][i] and not same_scan
            else:
                assert same_scan
                # two different crops of the one row
                assert not torch.equal(batch["fmri_values"][i], batch["paired_fmri_values"][i])
    assert set(seen.values()) == {1} and len(seen) == 6
    ids = batches[0]["subject_ids"]
    assert ids.tolist() == [shard_folder.subject_ids[s] for s in batches[0]["subject"]]


def test_pair_sampler_ranks_and_resume(shard_folder):
    ranks = [PairSampler(shard_folder, subjects_per_batch=3, seed=6, rank=r, world_size=2) for r in (0, 1)]
    subjects = [{s for b in sampler for s in b["subject"]} for sampler in ranks]
    assert not subjects[0] & subjects[1] and len(subjects[0] | subjects[1]) == 6
    # 3 batches of 2 subjects cannot be dealt evenly to 2 ranks: the leftover batch is reported, not hidden.
    uneven = PairSampler(shard_folder, subjects_per_batch=2, seed=6, rank=0, world_size=2)
    assert uneven.leftover_batches(0) == 1 and len(uneven) == 1
    sampler = PairSampler(shard_folder, subjects_per_batch=2, seed=6, window_length=24)
    straight = [b["fmri_values"] for b in sampler]
    sampler = PairSampler(shard_folder, subjects_per_batch=2, seed=6, window_length=24)
    iterator = iter(sampler)
    first = next(iterator)["fmri_values"]
    state = sampler.state_dict()
    resumed = PairSampler(shard_folder, subjects_per_batch=2, seed=6, window_length=24)
    resumed.load_state_dict(state)
    rest = [b["fmri_values"] for b in resumed]
    assert len(rest) == len(straight) - 1
    for got, expected in zip([first, *rest], straight):
        torch.testing.assert_close(got, expected)


def test_pair_sampler_reports_subjects_without_pairs(shard_folder, caplog):
    sampler = PairSampler(shard_folder, subjects=["sub-001", "sub-002", "sub-003"], subjects_per_batch=2)
    assert sampler.excluded_subjects == [] and len(sampler.candidates) == 3
    with pytest.raises(
        FmriInputError,
        match=r"at least 2 training subjects with a cross_modality pair .*found 1 of 1 "
        r"\(more training subjects",
    ):
        PairSampler(shard_folder, subjects=["sub-001"])
    with pytest.raises(FmriInputError, match=r"--subjects_per_batch: expected at least 2 subjects per batch"):
        PairSampler(shard_folder, subjects_per_batch=1)


def test_pair_sampler_on_rest_only_data_names_the_flag_that_fixes_it(tmp_path):
    make_synthetic_cohort(tmp_path / "rest", subjects=3, sessions=1, rois=6, frames=40, task=False, seed=0)
    convert(tmp_path / "rest" / "manifest.tsv", tmp_path / "shards", progress=False)
    with pytest.raises(
        FmriInputError,
        match=r"found 0 of 3 \(the data has rest scans only: use --positives "
        r"cross_session",
    ):
        PairSampler(tmp_path / "shards")
    with pytest.raises(FmriInputError, match="each subject needs scans in two sessions: use --positives same_scan"):
        PairSampler(tmp_path / "shards", positives="cross_session")


def test_splits_are_by_subject_grouped_and_deterministic(synthetic_cohort, tmp_path):
    subjects = [f"s{i:02d}" for i in range(40)]
    families = {s: f"family{i // 4}" for i, s in enumerate(subjects)}
    splits = make_splits(subjects, families, seed=0)
    assert splits == make_splits(subjects, families, seed=0) and splits != make_splits(subjects, families, seed=1)
    assert sorted(s for members in splits.values() for s in members) == subjects
    for name, members in splits.items():
        for other, other_members in splits.items():
            if name != other:
                assert not {families[s] for s in members} & {families[s] for s in other_members}
    assert [len(splits[n]) for n in ("train", "validation", "test")] == [28, 8, 4] or abs(
        len(splits["train"]) - 28
    ) <= 4
    save_splits(splits, tmp_path / "splits.json", seed=0)
    assert load_splits(tmp_path / "splits.json") == splits
    with pytest.raises(ValueError, match="share 1 subjects: s00"):
        check_disjoint({"train": ["s00", "s01"], "test": ["s00"]})
    manifest_splits = splits_from_manifest(read_manifest(synthetic_cohort / "manifest.tsv"), seed=0)
    assert sorted(s for members in manifest_splits.values() for s in members) == [f"sub-{i:03d}" for i in range(1, 7)]


def test_synthetic_cohort_structure(synthetic_cohort):
    """Each subject's FC is its own (split-session identification), and task scans carry the block response."""
    from r2tnet_hf.data.synthetic import block_design
    from r2tnet_hf.evaluation.fingerprinting import functional_connectivity, identification

    manifest = read_manifest(synthetic_cohort / "manifest.tsv")

    def load(record):
        return np.loadtxt(manifest.resolve(record), skiprows=1).T

    rest = {(r.subject, r.session): load(r) for r in manifest.records if r.modality == "rest"}
    subjects = sorted({s for s, _ in rest})
    first = np.stack([functional_connectivity(rest[(s, "ses-1")]) for s in subjects])
    second = np.stack([functional_connectivity(rest[(s, "ses-2")]) for s in subjects])
    assert identification(first, second, subjects, subjects)["rank1_a2b"] == 1.0
    design = block_design(96, 0.8)
    task = [load(r) for r in manifest.records if r.modality == "task"]

    def explained(x):  # mean over ROIs of the variance explained by the block design
        return np.mean([np.corrcoef(roi, design)[0, 1] ** 2 for roi in x])

    assert np.mean([explained(x) for x in task]) > 2 * np.mean([explained(x) for x in rest.values()])
    lag1 = np.mean([np.corrcoef(x[:, :-1].ravel(), x[:, 1:].ravel())[0, 1] for x in rest.values()])
    assert lag1 > 0.4  # realistic autocorrelation, not white noise


def test_synthetic_cohort_in_another_cohorts_roi_order(tmp_path):
    manifest = make_synthetic_cohort(tmp_path, subjects=1, sessions=1, rois=3, frames=20, roi_labels=["a", "b", "c"])
    header = manifest.resolve(manifest.records[0]).read_text().splitlines()[0]
    assert header.split("\t") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="roi_labels has 2 names for 3 ROIs"):
        make_synthetic_cohort(tmp_path / "x", subjects=1, rois=3, frames=20, roi_labels=["a", "b"])
