"""Contrastive batches whose positives are the same person in another modality or session.

R2T-Net's reference code paired two clips of one scan. `PairSampler` pairs what the model is meant to learn:

- `cross_modality`: a rest row and a task row of the same subject (rest⇄task);
- `cross_session`: two rows of the same subject from different sessions;
- `same_scan`: two windows of one scan (two rows of one scan when it was cut into windows, else two crops of the
  same row), the reference code's pairs, kept for ablations.

Each batch holds `subjects_per_batch` different subjects, one positive pair each, in the two-view form that
`R2TNetForContrastivePretraining` takes (`fmri_values` and `paired_fmri_values`, with `subject_ids`). The plan of an
epoch is a function of (seed, epoch), so the state is just `{"epoch", "batch"}` and resuming is exact. With several
processes, batch *i* goes to process `i % world_size`; the batches left over when their count is not a multiple of the
world size are reported in `leftover_batches` (their subjects come back next epoch, in other batches).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict

import numpy as np

from ..errors import FmriInputError
from .streaming import ShardFolder, _seed, _world, collate_fmri, sample_from_row, window_processor

logger = logging.getLogger(__name__)

POSITIVES = ("cross_modality", "cross_session", "same_scan")


class PairSampler:
    """Iterate contrastive batches from a shard folder.

    Args:
        folder: a folder written by `r2tnet convert` (or a `ShardFolder`).
        positives (`str`, defaults to `"cross_modality"`): one of `cross_modality`, `cross_session`, `same_scan`.
        subjects_per_batch (`int`, defaults to 8): subjects (= positive pairs) per batch; at least 2.
        subjects (*optional*): restrict to these subjects (e.g. the training split).
        window_length (`int`, *optional*): frames per view, cut at random through the processor.
        min_window_length (`int`, *optional*): when given, each view is a crop of a random length between it (at
            most `window_length`) and `window_length` (at most the scan's length), at a random place: identification
            must work from short scans, and real scans are often shorter than one fixed window.
        roi_dropout (`float`, defaults to 0.0): probability that a ROI of a view is set to 0 (ROI input only), as a
            parcel outside the field of view or flat in one scan is.
        seed (`int`), rank, world_size: as for `FmriStream`.
    """

    def __init__(
        self,
        folder,
        positives: str = "cross_modality",
        subjects_per_batch: int = 8,
        subjects=None,
        window_length: int | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        min_window_length: int | None = None,
        roi_dropout: float = 0.0,
    ):
        if positives not in POSITIVES:
            raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}")
        self.shards = folder if isinstance(folder, ShardFolder) else ShardFolder(folder)
        if subjects_per_batch < 2:
            raise FmriInputError.for_source(
                "--subjects_per_batch",
                expected="at least 2 subjects per batch (the other subjects are each pair's negatives)",
                found=f"{subjects_per_batch}",
            )
        self.processor = window_processor(self.shards, window_length)
        if min_window_length is not None and window_length is not None:
            min_window_length = min(min_window_length, window_length)
        if not 0.0 <= roi_dropout < 1.0:
            raise ValueError(f"roi_dropout must be in [0, 1), got {roi_dropout}")
        self.positives, self.subjects_per_batch, self.seed = positives, subjects_per_batch, seed
        self.min_window_length, self.roi_dropout = min_window_length, roi_dropout
        default_rank, default_world = _world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.epoch, self.batch = 0, 0
        self.candidates = self._candidates(None if subjects is None else set(subjects))
        self.excluded_subjects = sorted(self._considered - set(self.candidates))
        if self.excluded_subjects and self.rank == 0:
            logger.warning(
                f"{len(self.excluded_subjects)} subjects have no {positives} pair and are not sampled: "
                f"{', '.join(self.excluded_subjects[:10])}{' ...' if len(self.excluded_subjects) > 10 else ''}"
            )
        if len(self.candidates) < 2:
            raise FmriInputError.for_source(
                self.shards.folder,
                expected=f"at least 2 training subjects with a {positives} pair (a batch needs 2 or more)",
                found=f"{len(self.candidates)} of {len(self._considered)}",
                hint=self._pairing_hint(),
            )

    def _pairing_hint(self) -> str:
        """The flag that fixes a cohort without enough pairs, from what the data has."""
        meta = self.shards.metadata
        modalities = set(meta["modality"].tolist())
        if self.positives == "cross_modality" and modalities != {"rest", "task"}:
            return (
                f"the data has {'/'.join(sorted(modalities))} scans only: use --positives cross_session (two sessions "
                "or runs per subject) or --positives same_scan (two windows of one scan)"
            )
        if self.positives == "cross_session":
            return "each subject needs scans in two sessions: use --positives same_scan for one scan per subject"
        return "more training subjects are needed: check --splits (or the split fractions) and the manifest"

    def _candidates(self, keep) -> dict[str, list[tuple[int, int]]]:
        """Per subject, the row pairs (a, b) that are valid positives."""
        meta = self.shards.metadata
        rows_by_subject = defaultdict(list)
        for index, subject in enumerate(meta["subject"]):
            if keep is None or subject in keep:
                rows_by_subject[subject].append(index)
        self._considered = set(rows_by_subject)
        candidates = {}
        for subject, rows in sorted(rows_by_subject.items()):
            pairs = []
            for i, a in enumerate(rows):
                for b in rows[i + 1 :] if self.positives != "same_scan" else rows[i:]:
                    same_scan = meta["scan_index"][a] == meta["scan_index"][b]
                    if self.positives == "cross_modality":
                        valid = meta["modality"][a] != meta["modality"][b]
                    elif self.positives == "cross_session":
                        valid = meta["session"][a] != meta["session"][b]
                    else:
                        # two windows of one scan; a row with itself only when the scan is a single row
                        valid = same_scan and (a != b or self._rows_per_scan[meta["scan_index"][a]] == 1)
                    if valid:
                        pairs.append((a, b))
            if pairs:
                candidates[subject] = pairs
        return candidates

    @functools.cached_property
    def _rows_per_scan(self) -> dict[int, int]:
        scans, counts = np.unique(self.shards.metadata["scan_index"], return_counts=True)
        return dict(zip(scans.tolist(), counts.tolist()))

    def plan(self, epoch: int) -> list[list[tuple[str, int, int]]]:
        """All batches of an epoch (every process's): lists of (subject, row_a, row_b)."""
        subjects = sorted(self.candidates)
        order = _seed(self.seed, epoch, 0x5B7).permutation(len(subjects))
        batches = []
        for start in range(0, len(order), self.subjects_per_batch):
            chosen = [subjects[i] for i in order[start : start + self.subjects_per_batch]]
            if len(chosen) < 2:  # a lone subject has no negatives; it is first in line next epoch's shuffle
                continue
            batch = []
            for subject in chosen:
                pairs = self.candidates[subject]
                subject_number = self.shards.subject_ids[subject]
                a, b = pairs[int(_seed(self.seed, epoch, start, subject_number).integers(len(pairs)))]
                batch.append((subject, a, b))
            batches.append(batch)
        return batches

    def __len__(self) -> int:
        """Batches this process yields per epoch."""
        return len(self.plan(self.epoch)) // self.world_size

    def leftover_batches(self, epoch: int) -> int:
        return len(self.plan(epoch)) % self.world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.batch = epoch, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch = state["epoch"], state["batch"]

    def __iter__(self):
        epoch = self.epoch
        plan = self.plan(epoch)
        usable = len(plan) - len(plan) % self.world_size
        mine = list(range(self.rank, usable, self.world_size))
        while self.batch < len(mine):
            number = mine[self.batch]
            batch = self.load_batch(plan[number], _seed(self.seed, epoch, number, 0xC20))
            self.batch += 1  # the state now points past the batch being handed out
            yield batch
        self.set_epoch(epoch + 1)

    def augment(self, view: dict, generator: np.random.Generator) -> dict:
        """A random-length crop of the view's real frames and ROI dropout, as configured (no-ops by default)."""
        values, mask = view["fmri_values"], view["attention_mask"]
        if self.min_window_length is not None:
            real = int(mask.sum())
            length = int(generator.integers(min(self.min_window_length, real), real + 1))
            start = int(generator.integers(0, real - length + 1))
            values, mask = values[..., start : start + length], mask[start : start + length]
        if self.roi_dropout > 0 and self.processor.input_type == "roi":
            keep = generator.random(values.shape[0]) >= self.roi_dropout
            values = values * keep[:, None].astype(values.dtype)
        return {**view, "fmri_values": values, "attention_mask": mask}

    def load_batch(self, batch: list[tuple[str, int, int]], generator: np.random.Generator) -> dict:
        """Read the rows of a planned batch and cut their windows."""
        meta_ids, columns = self.shards.subject_ids, self.shards.phenotype_columns
        views = []
        for row_index in [a for _, a, _ in batch] + [b for _, _, b in batch]:
            row = self.shards.read_row(row_index)
            view = sample_from_row(row, self.processor, generator, "random", meta_ids, columns)
            views.append(self.augment(view, generator))
        first, second = collate_fmri(views[: len(batch)]), collate_fmri(views[len(batch) :])
        return {
            "fmri_values": first["fmri_values"],
            "attention_mask": first["attention_mask"],
            "repetition_time": first["repetition_time"],
            "paired_fmri_values": second["fmri_values"],
            "paired_attention_mask": second["attention_mask"],
            "paired_repetition_time": second["repetition_time"],
            "subject_ids": first["subject_ids"],
            "subject": first["subject"],
            "modality": first["modality"],
            "paired_modality": second["modality"],
            "session": first["session"],
            "paired_session": second["session"],
            "scan_index": first["scan_index"],
            "paired_scan_index": second["scan_index"],
        }
