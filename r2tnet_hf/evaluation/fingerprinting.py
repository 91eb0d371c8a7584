"""Identification ("fingerprinting"): find each subject's other session among all subjects' sessions.

- `functional_connectivity` / `fc_features`: the Finn et al. (2015) feature, the upper triangle of the Pearson
  correlation matrix between ROI time series, Fisher z-transformed.
- `similarity_matrix`: Pearson correlation between every row of one side and every row of the other.
- `identification`: Rank-1 in both directions and mean average precision, with subject labels per row (a subject may
  have several rows; rows of subjects missing from the other side are reported, not scored).
- `ScanSet`, `pairwise_identification`: a cohort's scans with subject, session and state labels, cut into
  non-overlapping segments if asked, and Rank-1 for every ordered pair of sessions with its spread over pairs.
- `icc`: test-retest ICC(3,1) of every feature dimension.
- `fingerprint_report`: model and FC baseline side by side; `plot_similarity`: the similarity matrix as a PNG.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FmriInputError
from ..utils import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def functional_connectivity(series: np.ndarray) -> np.ndarray:
    """Fisher-z Pearson FC upper triangle (k=1) of a `(V, T)` series: a vector of length V(V-1)/2."""
    correlation = np.corrcoef(np.asarray(series, dtype=np.float64))
    upper = correlation[np.triu_indices_from(correlation, k=1)]
    return np.arctanh(np.clip(upper, -0.999999, 0.999999))


def fc_features(series_list: Sequence) -> np.ndarray:
    """The FC baseline features of several scans: `(num_scans, V(V-1)/2)`.

    Each item is a `(V, T)` array or anything with a `.data` `(V, T)` array (an `FmriSeries`). All scans must have
    the same V. Flat ROIs (zero variance) give NaN correlations, which are set to 0.
    """
    rows = []
    for item in series_list:
        data = np.asarray(getattr(item, "data", item), dtype=np.float64)
        if data.ndim != 2:
            raise FmriInputError.for_source(
                getattr(item, "source", None), expected="a 2-D (V, T) ROI series for FC", found=f"shape {data.shape}"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            rows.append(np.nan_to_num(functional_connectivity(data), nan=0.0))
    sizes = {len(row) for row in rows}
    if len(sizes) > 1:
        raise FmriInputError.for_source(None, expected="scans with the same number of ROIs", found=f"{sorted(sizes)}")
    return np.stack(rows)


def _standardise(rows: np.ndarray) -> np.ndarray:
    rows = rows - rows.mean(axis=1, keepdims=True)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True).clip(min=1e-12)


def similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation between each row of `a` `(n, F)` and each row of `b` `(m, F)`: `(n, m)`.

    For L2-normalised, centred vectors this is the cosine similarity.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (rows, features) matrices with the same features, got {a.shape} and {b.shape}")
    return _standardise(a) @ _standardise(b).T


def _one_direction(similarity: np.ndarray, query_subjects: np.ndarray, database_subjects: np.ndarray) -> dict:
    """Rank-1 and mAP of the rows of `similarity` (queries) against its columns (database)."""
    present = set(database_subjects.tolist())
    scored = np.array([subject in present for subject in query_subjects.tolist()], dtype=bool)
    hits, precisions = [], []
    for row in np.flatnonzero(scored):
        order = np.argsort(-similarity[row], kind="stable")  # ties: earlier database row first
        relevant = database_subjects[order] == query_subjects[row]
        hits.append(bool(relevant[0]))
        ranks = np.flatnonzero(relevant) + 1  # 1-based ranks of the relevant rows
        precisions.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))  # average precision
    return {
        "rank1": float(np.mean(hits)) if hits else float("nan"),
        "map": float(np.mean(precisions)) if precisions else float("nan"),
        "queries": int(scored.sum()),
        "unmatched": sorted({str(s) for s in query_subjects[~scored].tolist()}),
    }


def identification(
    queries: np.ndarray,
    database: np.ndarray,
    query_subjects: Sequence,
    database_subjects: Sequence,
) -> dict:
    """Identification between two sides (sessions, or rest vs task), in both directions.

    Args:
        queries (`np.ndarray` of shape `(n, F)`): features of side A, one row per scan.
        database (`np.ndarray` of shape `(m, F)`): features of side B.
        query_subjects (`Sequence` of length n): the subject of each row of `queries`.
        database_subjects (`Sequence` of length m): the subject of each row of `database`.

    Similarity is the Pearson correlation between rows (`similarity_matrix`). A → B: every row of A whose subject
    has a row in B is a query; it scores a Rank-1 hit when its most similar B row is its own subject's (ties go to
    the earlier row), and its average precision ranks every B row by similarity with the B rows of its own subject
    as the relevant ones. B → A is the same with the sides swapped. Rows of subjects absent from the other side are
    not scored; their subjects are listed under `unmatched_a` / `unmatched_b`.

    Returns:
        `dict` with `rank1_a2b`, `rank1_b2a`, `map_a2b`, `map_b2a`, `map` (the mean of both directions),
        `queries_a2b`, `queries_b2a` (rows scored), `unmatched_a`, `unmatched_b` (subject lists) and `similarity`
        (the `(n, m)` matrix).

    Raises:
        `FmriInputError` if the shapes or label counts disagree, or no subject is on both sides.
    """
    queries, database = np.asarray(queries, dtype=np.float64), np.asarray(database, dtype=np.float64)
    query_subjects = np.asarray([str(s) for s in query_subjects])
    database_subjects = np.asarray([str(s) for s in database_subjects])
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise FmriInputError.for_source(
            None,
            expected="two (rows, features) matrices with the same number of features",
            found=f"{queries.shape} and {database.shape}",
        )
    if len(query_subjects) != len(queries) or len(database_subjects) != len(database):
        raise FmriInputError.for_source(
            None,
            expected=f"one subject per row ({len(queries)} and {len(database)})",
            found=f"{len(query_subjects)} and {len(database_subjects)} subjects",
        )
    if not set(query_subjects.tolist()) & set(database_subjects.tolist()):
        raise FmriInputError.for_source(None, expected="at least one subject on both sides", found="none in common")
    similarity = similarity_matrix(queries, database)
    forward = _one_direction(similarity, query_subjects, database_subjects)
    backward = _one_direction(similarity.T, database_subjects, query_subjects)
    return {
        "rank1_a2b": forward["rank1"],
        "rank1_b2a": backward["rank1"],
        "map_a2b": forward["map"],
        "map_b2a": backward["map"],
        "map": float(np.mean([forward["map"], backward["map"]])),
        "queries_a2b": forward["queries"],
        "queries_b2a": backward["queries"],
        "unmatched_a": forward["unmatched"],
        "unmatched_b": backward["unmatched"],
        "similarity": similarity,
    }


@dataclass
class ScanSet:
    """The scans of a cohort for identification: one `(V, T)` array per scan and its labels.

    Attributes:
        series: the `(V, T)` arrays, time last.
        subjects: the subject of each scan.
        sessions: the side each scan is identified across (a session, a run, or the modality): Rank-1 is scored
            between every ordered pair of distinct values.
        states: what state-centring centres on (the modality or the task); defaults to one state for all.
        scans: the index of the scan a row was cut from (`segments`); defaults to the row index.
        repetition_times: seconds per frame of each scan, for encoding them with a model (optional).
    """

    series: list
    subjects: list
    sessions: list
    states: list | None = None
    scans: list | None = field(default=None)
    repetition_times: list | None = None

    def __post_init__(self):
        self.subjects = [str(s) for s in self.subjects]
        self.sessions = [str(s) for s in self.sessions]
        self.states = ["all"] * len(self.series) if self.states is None else [str(s) for s in self.states]
        self.scans = list(range(len(self.series))) if self.scans is None else list(self.scans)
        if self.repetition_times is None:
            self.repetition_times = [float("nan")] * len(self.series)
        self.repetition_times = [float(tr) for tr in self.repetition_times]
        lengths = {len(self.series), len(self.subjects), len(self.sessions), len(self.states), len(self.scans)}
        lengths.add(len(self.repetition_times))
        if len(lengths) != 1:
            raise ValueError(f"ScanSet needs one label of each kind per scan, got lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.series)

    def subset(self, subjects) -> ScanSet:
        """The scans of the given subjects, in their original order."""
        keep = set(map(str, subjects))
        rows = [i for i, s in enumerate(self.subjects) if s in keep]
        return self._rows(rows)

    def _rows(self, rows) -> ScanSet:
        return ScanSet(
            [self.series[i] for i in rows],
            [self.subjects[i] for i in rows],
            [self.sessions[i] for i in rows],
            [self.states[i] for i in rows],
            [self.scans[i] for i in rows],
            [self.repetition_times[i] for i in rows],
        )

    def segments(self, length: int | None) -> ScanSet:
        """Every scan cut into consecutive, non-overlapping `length`-frame segments (`None`: the whole scans).

        The frames after the last whole segment are not used; a scan shorter than `length` gives no segment (count
        them with `frames_unused`).
        """
        if length is None:
            return self
        if length < 3:
            raise ValueError(f"segment length must be >= 3 frames, got {length}")
        rows, series = [], []
        for i, data in enumerate(self.series):
            for start in range(0, np.shape(data)[-1] - length + 1, length):
                rows.append(i)
                series.append(np.asarray(data)[..., start : start + length])
        segments = self._rows(rows)
        segments.series = series
        return segments

    def frames_unused(self, length: int | None) -> int:
        """Frames that `segments(length)` leaves out (the tail of each scan after its last whole segment)."""
        if length is None:
            return 0
        return int(sum(np.shape(data)[-1] % length for data in self.series))


def pairwise_identification(features: np.ndarray, subjects: Sequence, sessions: Sequence) -> dict:
    """Rank-1 identification between every ordered pair of sessions.

    For sessions a ≠ b, every row of a whose subject has a row in b is a query; the gallery is every row of b; the
    query scores a hit when its most similar gallery row (Pearson correlation, `similarity_matrix`) is its own
    subject's. With segments, a subject has several rows per session, and any of its rows in b is a hit.

    Returns:
        `dict` with `rank1` (the mean over pairs), `rank1_std`, `rank1_min`, `rank1_max` (its spread over pairs),
        `map` (mean average precision over pairs), `idiff` (differential identifiability, Amico & Goñi 2018: 100 ×
        the mean similarity of a query to its own subject's gallery rows minus that to the others', averaged over
        pairs; it keeps ranking when Rank-1 saturates), `queries` (over all pairs), `subjects` (with rows in at
        least two sessions), `pairs` (one entry per scored pair: `a`, `b`, `rank1`, `map`, `idiff`, `queries`). NaN values and
        no pairs when no subject has rows in two sessions.
    """
    features = np.asarray(features, dtype=np.float64)
    subjects = np.asarray([str(s) for s in subjects])
    sessions = np.asarray([str(s) for s in sessions])
    if features.ndim != 2 or len(features) != len(subjects) or len(subjects) != len(sessions):
        raise ValueError(
            f"need (rows, features) and one subject and session per row, got {features.shape}, {len(subjects)} "
            f"subjects and {len(sessions)} sessions"
        )
    standardised = _standardise(features)
    pairs = []
    for a, b in itertools.permutations(sorted(set(sessions.tolist())), 2):
        queries, gallery = np.flatnonzero(sessions == a), np.flatnonzero(sessions == b)
        similarity = standardised[queries] @ standardised[gallery].T
        found = _one_direction(similarity, subjects[queries], subjects[gallery])
        if found["queries"]:
            same = subjects[queries][:, None] == subjects[gallery][None, :]
            idiff = 100.0 * (similarity[same].mean() - similarity[~same].mean()) if (~same).any() else float("nan")
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "rank1": found["rank1"],
                    "map": found["map"],
                    "idiff": idiff,
                    "queries": found["queries"],
                }
            )
    rank1 = np.array([pair["rank1"] for pair in pairs])
    nan = float("nan")
    by_subject: dict[str, set] = {}
    for subject, session in zip(subjects.tolist(), sessions.tolist()):
        by_subject.setdefault(subject, set()).add(session)
    return {
        "rank1": float(rank1.mean()) if pairs else nan,
        "rank1_std": float(rank1.std()) if pairs else nan,
        "rank1_min": float(rank1.min()) if pairs else nan,
        "rank1_max": float(rank1.max()) if pairs else nan,
        "map": float(np.mean([pair["map"] for pair in pairs])) if pairs else nan,
        "idiff": float(np.mean([pair["idiff"] for pair in pairs])) if pairs else nan,
        "queries": int(sum(pair["queries"] for pair in pairs)),
        "subjects": sum(len(found) >= 2 for found in by_subject.values()),
        "pairs": pairs,
    }


def icc(signatures_session1: np.ndarray, signatures_session2: np.ndarray) -> dict:
    """Test-retest ICC(3,1) of every feature dimension (Shrout & Fleiss, 1979).

    Two-way mixed effects, consistency, single measurement: with n subjects (rows, the same subject on the same row
    of both arguments) and k = 2 sessions, `ICC = (MSR - MSE) / (MSR + (k - 1) MSE)`, MSR the between-subject mean
    square and MSE the residual mean square. A systematic session offset does not lower it (ICC(2,1) would).

    Args:
        signatures_session1, signatures_session2 (`np.ndarray` of shape `(n, F)`), n >= 2.

    Returns:
        `dict` with `per_dimension` (`(F,)`, NaN for dimensions with no variance), `mean` and `median` (over the
        finite values).
    """
    first = np.asarray(signatures_session1, dtype=np.float64)
    second = np.asarray(signatures_session2, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 2 or first.shape[0] < 2:
        raise FmriInputError.for_source(
            None, expected="two (subjects >= 2, features) matrices of one shape", found=f"{first.shape}, {second.shape}"
        )
    data = np.stack([first, second], axis=1)  # (n, k, F)
    n, k = data.shape[:2]
    grand = data.mean(axis=(0, 1))
    subject_means, session_means = data.mean(axis=1), data.mean(axis=0)
    ss_rows = k * np.sum((subject_means - grand) ** 2, axis=0)
    ss_columns = n * np.sum((session_means - grand) ** 2, axis=0)
    ss_total = np.sum((data - grand) ** 2, axis=(0, 1))
    ms_rows = ss_rows / (n - 1)
    ms_error = (ss_total - ss_rows - ss_columns) / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(denominator > 1e-12, (ms_rows - ms_error) / denominator, np.nan)
    finite = values[np.isfinite(values)]
    return {
        "per_dimension": values,
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "median": float(np.median(finite)) if finite.size else float("nan"),
    }


def _subject_means(features: np.ndarray, subjects: np.ndarray, order: list[str]) -> np.ndarray:
    return np.stack([features[subjects == subject].mean(axis=0) for subject in order])


def fingerprint_report(
    model_features_a: np.ndarray,
    model_features_b: np.ndarray,
    fc_a: np.ndarray,
    fc_b: np.ndarray,
    subjects_a: Sequence,
    subjects_b: Sequence,
) -> dict:
    """Identification from the model's features and from the FC baseline on the same scans, side by side.

    Args:
        model_features_a, model_features_b (`np.ndarray` `(n, D)`, `(m, D)`): signatures of side A and side B.
        fc_a, fc_b (`np.ndarray` `(n, E)`, `(m, E)`): `fc_features` of the same scans, in the same order.
        subjects_a, subjects_b (`Sequence` of length n, m): the subject of each row.

    Returns:
        A JSON-ready `dict`: `model_rank1_a2b`, `model_rank1_b2a`, `model_map_a2b`, `model_map_b2a`, `model_map`,
        the same with the `fc_` prefix, `icc_mean` / `icc_median` (ICC(3,1) of the model's dimensions over the
        subjects on both sides, each side's rows averaged per subject; NaN with fewer than 2 such subjects),
        `fc_icc_mean` / `fc_icc_median`, `subjects` (on both sides), `rows_a`, `rows_b`, `queries_a2b`,
        `queries_b2a`, `unmatched_a`, `unmatched_b`.
    """
    subjects_a = np.asarray([str(s) for s in subjects_a])
    subjects_b = np.asarray([str(s) for s in subjects_b])
    for name, features, subjects in (
        ("fc_a", fc_a, subjects_a),
        ("fc_b", fc_b, subjects_b),
        ("model_features_a", model_features_a, subjects_a),
        ("model_features_b", model_features_b, subjects_b),
    ):
        if len(features) != len(subjects):
            raise FmriInputError.for_source(
                name, expected=f"{len(subjects)} rows (one per subject label)", found=f"{len(features)}"
            )
    model = identification(model_features_a, model_features_b, subjects_a, subjects_b)
    fc = identification(fc_a, fc_b, subjects_a, subjects_b)
    report = {}
    for prefix, result in (("model", model), ("fc", fc)):
        for key in ("rank1_a2b", "rank1_b2a", "map_a2b", "map_b2a", "map"):
            report[f"{prefix}_{key}"] = result[key]
    common = sorted(set(subjects_a.tolist()) & set(subjects_b.tolist()))
    for prefix, (a, b) in (("", (model_features_a, model_features_b)), ("fc_", (fc_a, fc_b))):
        if len(common) >= 2:
            values = icc(
                _subject_means(np.asarray(a, dtype=np.float64), subjects_a, common),
                _subject_means(np.asarray(b, dtype=np.float64), subjects_b, common),
            )
        else:
            values = {"mean": float("nan"), "median": float("nan")}
        report[f"{prefix}icc_mean"], report[f"{prefix}icc_median"] = values["mean"], values["median"]
    report.update(
        subjects=len(common),
        rows_a=len(subjects_a),
        rows_b=len(subjects_b),
        queries_a2b=model["queries_a2b"],
        queries_b2a=model["queries_b2a"],
        unmatched_a=model["unmatched_a"],
        unmatched_b=model["unmatched_b"],
    )
    return report


def plot_similarity(
    similarity: np.ndarray,
    labels: Sequence,
    path: str | os.PathLike,
    column_labels: Sequence | None = None,
    title: str = "cross-session similarity (Pearson r)",
    axis_labels: tuple[str, str] = ("subjects, first session", "subjects, second session"),
    limits: tuple[float, float] | None = None,
    colorbar_label: str = "Pearson r between the two scans' features",
) -> Figure:
    """Write the similarity matrix as a PNG heat map, atomically (matplotlib's Agg canvas; no display needed), and
    return the matplotlib `Figure`.

    Args:
        similarity (`np.ndarray` `(n, m)`): e.g. `identification(...)["similarity"]`.
        labels (`Sequence` of length n): row labels (subjects of side A); also the column labels unless
            `column_labels` is given.
        path: the PNG to write.
        axis_labels: what the rows and the columns are.
        limits: the colour scale `(low, high)`; give two plots the same limits to compare them.
        colorbar_label: what the colours are.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    similarity = np.asarray(similarity, dtype=np.float64)
    column_labels = labels if column_labels is None else column_labels
    if similarity.ndim != 2 or similarity.shape != (len(labels), len(column_labels)):
        raise ValueError(
            f"similarity {similarity.shape} does not match {len(labels)} row and {len(column_labels)} column labels"
        )
    size = min(12.0, max(5.0, 3.0 + 0.25 * max(similarity.shape)))  # room for a two-line title
    figure = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    low, high = limits if limits is not None else (None, None)
    image = axes.imshow(similarity, cmap="viridis", aspect="auto", interpolation="nearest", vmin=low, vmax=high)
    figure.colorbar(image, ax=axes, label=colorbar_label)
    if max(similarity.shape) <= 60:  # tick labels stay readable
        axes.set_yticks(range(len(labels)), [str(label) for label in labels], fontsize=7)
        axes.set_xticks(range(len(column_labels)), [str(label) for label in column_labels], fontsize=7, rotation=90)
    axes.set_ylabel(axis_labels[0])
    axes.set_xlabel(axis_labels[1])
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return figure
