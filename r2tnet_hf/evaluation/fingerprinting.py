"""Identification ("fingerprinting"): find each subject's other session among all subjects' sessions.

`functional_connectivity` is the Finn et al. (2015) feature: the upper triangle of the Pearson correlation matrix
between ROI time series, Fisher z-transformed. `identification_accuracy` matches every query to the database entry
it correlates with most and counts the hits (Rank-1).
"""

from __future__ import annotations

import numpy as np


def functional_connectivity(series: np.ndarray) -> np.ndarray:
    """Fisher-z Pearson FC upper triangle (k=1) of a `(V, T)` series: a vector of length V(V-1)/2."""
    correlation = np.corrcoef(np.asarray(series, dtype=np.float64))
    upper = correlation[np.triu_indices_from(correlation, k=1)]
    return np.arctanh(np.clip(upper, -0.999999, 0.999999))


def identification_accuracy(queries: np.ndarray, database: np.ndarray) -> float:
    """Rank-1 identification: row i of `queries` and row i of `database` belong to the same subject.

    Similarity is the Pearson correlation between feature vectors (for L2-normalised, centred vectors this is the
    cosine). Returns the fraction of queries whose most similar database row is their own subject's.
    """
    queries, database = np.asarray(queries, dtype=np.float64), np.asarray(database, dtype=np.float64)
    if queries.shape != database.shape or queries.ndim != 2:
        raise ValueError(
            f"queries and database must both be (subjects, features), got {queries.shape}, {database.shape}"
        )

    def standardise(rows):
        rows = rows - rows.mean(axis=1, keepdims=True)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True).clip(min=1e-12)

    similarity = standardise(queries) @ standardise(database).T
    return float(np.mean(similarity.argmax(axis=1) == np.arange(len(queries))))
