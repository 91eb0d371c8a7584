"""The closed-form start of a `TangentConnectomeModel`, fitted on training subjects before any gradient step.

1. The tangent-space reference: the geometric mean of the training scans' Ledoit–Wolf covariances and its inverse
   square root, from the tangent-space baseline itself (`r2tnet_hf.evaluation.baselines.TangentFc`, i.e. nilearn),
   so that the model and the baseline share one reference.
2. The training mean of the model's tangent vectors (its own map at that reference).
3. The within-subject directions: every training scan's tangent vector minus its subject's mean, over subjects with
   two scans or more; the top `within_subject_components` singular directions of those differences, each shrunk
   by `sqrt(r σ² / (λ + r σ²))`, λ its variance per degree of freedom, σ² the mean variance of a feature over the
   training scans and r `within_subject_regularization` (a regularised whitening of the within-subject covariance,
   what speaker verification calls WCCN).

Scans are cut into `segment_length`-frame segments first when it is given (the reference and the within-subject
variation are then those of short scans, the harder case; whole scans still map through the same reference).
"""

from __future__ import annotations

import numpy as np
import torch

from ..evaluation.baselines import TangentFc
from ..evaluation.fingerprinting import ScanSet
from ..utils import single_threaded_blas


def within_subject_directions(vectors: np.ndarray, subjects, components: int, regularization: float):
    """`(basis (m, F), shrinkage (m,))` of the within-subject differences of `vectors` `(n, F)`."""
    subjects = np.asarray(subjects)
    deviations, degrees = [], 0
    for subject in sorted(set(subjects.tolist())):
        rows = vectors[subjects == subject]
        if len(rows) >= 2:
            deviations.append(rows - rows.mean(axis=0))
            degrees += len(rows) - 1
    width = vectors.shape[1]
    if not deviations or components == 0:
        return np.zeros((0, width)), np.zeros(0)
    deviations = np.concatenate(deviations)
    count = min(components, len(deviations), width)
    if len(deviations) > 4 * count and width > 4 * count:
        from sklearn.utils.extmath import randomized_svd

        _, singular, basis = randomized_svd(deviations, count, random_state=0)
    else:
        _, singular, basis = np.linalg.svd(deviations, full_matrices=False)
        singular, basis = singular[:count], basis[:count]
    variances = singular**2 / max(degrees, 1)
    spread = float(np.mean(np.var(vectors, axis=0)))
    shrinkage = np.sqrt(regularization * spread / (variances + regularization * spread))
    return basis, shrinkage


@single_threaded_blas
def fit_reference(backbone, scans: ScanSet, segment_length: int | None = None, batch_size: int = 64) -> dict:
    """Fit `backbone` (a `TangentConnectomeModel`) on training scans; returns what was fitted, for the run record.

    Args:
        backbone: the model; its learned correction is reset to the identity.
        scans: the training subjects' scans (`ScanSet`; only `series` and `subjects` are read).
        segment_length: cut the scans into segments of this many frames first (`None`: whole scans).
    """
    config = backbone.config
    rows = scans.segments(segment_length)
    if len(rows) < 2:
        raise ValueError(
            f"a tangent reference needs at least 2 training scans, got {len(rows)} (segment_length {segment_length})"
        )
    whitening = TangentFc().fit(rows).measure_.whitening_
    width = config.hidden_size
    backbone.set_reference(whitening, np.zeros(width), np.zeros((0, width)), np.zeros(0), len(rows))
    vectors = _tangent_vectors(backbone, rows, batch_size)  # the model's own map at this reference
    mean = vectors.mean(axis=0)
    basis, shrinkage = within_subject_directions(
        vectors - mean, rows.subjects, config.within_subject_components, config.within_subject_regularization
    )
    backbone.set_reference(whitening, mean, basis, shrinkage, len(rows))
    return {
        "reference_scans": len(rows),
        "reference_subjects": len(set(rows.subjects)),
        "reference_segment_length": segment_length,
        "within_subject_directions": len(basis),
        "within_subject_shrinkage_min": float(shrinkage.min()) if len(shrinkage) else None,
    }


@torch.no_grad()
def _tangent_vectors(backbone, rows: ScanSet, batch_size: int) -> np.ndarray:
    """The backbone's features of every row, float64 `(rows, V(V−1)/2)`, rows of equal length batched together."""
    device = backbone.reference_whitening.device
    lengths = np.array([np.shape(data)[-1] for data in rows.series])
    vectors = np.zeros((len(rows), backbone.config.hidden_size))
    for length in np.unique(lengths):
        chosen = np.flatnonzero(lengths == length)
        for start in range(0, len(chosen), batch_size):
            part = chosen[start : start + batch_size]
            values = torch.as_tensor(np.stack([rows.series[i] for i in part]), device=device)
            mask = torch.ones(values.shape[0], values.shape[-1], dtype=torch.bool, device=device)
            vectors[part] = backbone.features(backbone.tangent_matrices(values, mask)).cpu().numpy()
    return vectors
