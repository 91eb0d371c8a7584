"""The classical functional-connectivity (FC) baselines that every model figure is shown beside.

Each one is fitted on training (or unlabelled) subjects only, then applied to subjects it never saw:

- `raw`: Fisher-z Pearson FC, the upper triangle (Finn et al., 2015). Nothing is fitted.
- `state_centred`: raw FC minus the training subjects' mean FC of the scan's state (modality or task), so a task's
  shared connectivity change no longer dominates; a state not seen in training is centred on the overall mean.
- `tangent`: tangent-space connectivity at the training subjects' geometric mean (Varoquaux et al., 2010; Dadi et
  al., 2019): Ledoit–Wolf shrinkage covariances, whitened by the reference and mapped by the matrix logarithm. This
  is nilearn's `ConnectivityMeasure(kind="tangent")` with scikit-learn's `LedoitWolf`, not code of ours.
- `pca_removed`: state-centred FC with its top-k principal components over the training scans projected out (in the
  spirit of Amico & Goñi, 2018): with few training subjects, the directions in which they vary most are mostly
  what is shared (state, noise, scanner), while what tells a new person apart lies outside them.
- `pca_kept`: the coordinates on those top-k components instead (the low-rank reading; it throws the rest away).

The PCA k is chosen on validation subjects, and so is the strongest baseline (`fit_baselines`); the score that
chooses is the mean Rank-1 over every ordered pair of sessions (`pairwise_identification`), on segments when a
segment length is given, so that it does not saturate.

For phenotypes, every baseline's features go through one ridge solver (`fit_ridge_by_validation`: ridge for each
alpha of a grid, the lowest validation MAE wins); a ridge probe of a frozen R2T-Net runs the same solver on
signatures, so probe and baselines differ only in their features (`ridge_baselines`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..utils import single_threaded_blas
from .fingerprinting import ScanSet, fc_features, pairwise_identification

ALPHAS = tuple(10.0**k for k in range(-4, 4))
BASELINE_NAMES = ("raw", "state_centred", "tangent", "pca_removed", "pca_kept")
PCA_COMPONENTS = (1, 2, 3, 5, 8, 10, 15, 20, 30)
# Ties on validation (Rank-1, then mAP: small validation sets saturate) go to the baseline that was strongest on real
# data in our experiments, so that a tie never makes the comparison easier for a model.
TIE_ORDER = ("tangent", "pca_removed", "state_centred", "raw", "pca_kept")


class RawFc:
    """Fisher-z Pearson FC (upper triangle); flat ROIs correlate 0 with everything (`fc_features`)."""

    name = "raw"

    def fit(self, scans: ScanSet) -> RawFc:
        return self

    def transform(self, scans: ScanSet) -> np.ndarray:
        return fc_features(scans.series)

    def describe(self) -> str:
        return "Fisher-z Pearson FC"


class StateCentredFc(RawFc):
    """Raw FC minus the training mean FC of the scan's state."""

    name = "state_centred"

    def fit(self, scans: ScanSet) -> StateCentredFc:
        features = fc_features(scans.series)
        states = np.asarray(scans.states)
        self.overall_ = features.mean(axis=0)
        self.means_ = {state: features[states == state].mean(axis=0) for state in sorted(set(scans.states))}
        return self

    def centre(self, features: np.ndarray, states) -> np.ndarray:
        return features - np.stack([self.means_.get(state, self.overall_) for state in states])

    def transform(self, scans: ScanSet) -> np.ndarray:
        return self.centre(fc_features(scans.series), scans.states)

    def describe(self) -> str:
        return f"FC minus the training mean of each state ({', '.join(self.means_)})"


class PcaDenoisedFc(StateCentredFc):
    """State-centred FC without (`keep=False`) or on (`keep=True`) its top-k training components."""

    def __init__(self, components: int, keep: bool = False):
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        self.components, self.keep = components, keep
        self.name = "pca_kept" if keep else "pca_removed"

    def fit(self, scans: ScanSet, features: np.ndarray | None = None) -> PcaDenoisedFc:
        super().fit(scans)
        centred = self.centre(fc_features(scans.series) if features is None else features, scans.states)
        centred = centred - centred.mean(axis=0)
        if min(centred.shape) > 4 * self.components:  # only the top components are needed
            from sklearn.utils.extmath import randomized_svd

            _, _, vt = randomized_svd(centred, self.components, random_state=0)
        else:
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
        self.basis_ = vt[: self.components]
        return self

    def with_components(self, components: int, keep: bool) -> PcaDenoisedFc:
        """The same fit with fewer components (or the other mode), without a new decomposition."""
        other = PcaDenoisedFc(components, keep)
        other.overall_, other.means_, other.basis_ = self.overall_, self.means_, self.basis_[:components]
        return other

    def transform(self, scans: ScanSet) -> np.ndarray:
        return self.transform_centred(super().transform(scans))

    def transform_centred(self, centred: np.ndarray) -> np.ndarray:
        coordinates = centred @ self.basis_.T
        return coordinates if self.keep else centred - coordinates @ self.basis_

    def describe(self) -> str:
        kind = "on" if self.keep else "without"
        return f"state-centred FC {kind} its top {len(self.basis_)} training components"


class TangentFc:
    """Tangent-space FC at the training subjects' geometric mean: nilearn's `ConnectivityMeasure(kind="tangent")`
    with `LedoitWolf` covariances, vectorised without the diagonal.

    The geometric mean is iterative (an eigendecomposition per scan per iteration), so it is fitted on at most
    `max_scans` training scans, drawn with a fixed seed when there are more.
    """

    name = "tangent"

    def __init__(self, max_scans: int = 256):
        self.max_scans = max_scans

    def fit(self, scans: ScanSet) -> TangentFc:
        from nilearn.connectome import ConnectivityMeasure
        from sklearn.covariance import LedoitWolf

        self.measure_ = ConnectivityMeasure(
            kind="tangent",
            cov_estimator=LedoitWolf(store_precision=False),
            vectorize=True,
            discard_diagonal=True,
            standardize=False,
        )
        chosen = range(len(scans))
        if len(scans) > self.max_scans:
            chosen = sorted(np.random.default_rng(0).choice(len(scans), self.max_scans, replace=False).tolist())
        self.measure_.fit([np.asarray(scans.series[i], dtype=np.float64).T for i in chosen])
        self.fitted_scans_ = len(chosen)
        return self

    def transform(self, scans: ScanSet) -> np.ndarray:
        signals = [np.asarray(data, dtype=np.float64).T for data in scans.series]
        if len(signals) == 1:  # nilearn transforms groups only; the mapping itself is per scan
            return self.measure_.transform(signals * 2)[:1]
        return self.measure_.transform(signals)

    def describe(self) -> str:
        return "tangent-space FC (Ledoit–Wolf) at the training geometric mean"


def make_baseline(name: str, components: int | None = None):
    """A fresh (unfitted) baseline by name; the PCA baselines need `components`."""
    if name == "raw":
        return RawFc()
    if name == "state_centred":
        return StateCentredFc()
    if name == "tangent":
        return TangentFc()
    if name in ("pca_removed", "pca_kept"):
        return PcaDenoisedFc(components or 1, keep=name == "pca_kept")
    raise ValueError(f"unknown baseline {name!r}; the baselines are {', '.join(BASELINE_NAMES)}")


@dataclass
class BaselineSelection:
    """Baselines fitted on training subjects, each scored on validation subjects, and the strongest of them.

    Attributes:
        baselines: name → fitted baseline (each the variant that validation chose).
        validation: name → its validation Rank-1 (mean over ordered session pairs); ties are broken by the mAP
            (`choices[name]["validation_map"]`), then by `TIE_ORDER`.
        strongest: the name of the best baseline on validation.
        segment_length: the segment length the baselines are scored at (`None`: whole scans).
        choices: name → what validation chose for it: `components` (PCA's k) and `fitted_on` (`whole scans` or
            `N-frame segments` of the training scans) and `validation_map`.
    """

    baselines: dict
    validation: dict
    strongest: str
    segment_length: int | None = None
    choices: dict = field(default_factory=dict)

    def transform(self, scans: ScanSet) -> dict[str, np.ndarray]:
        return {name: baseline.transform(scans) for name, baseline in self.baselines.items()}

    def describe(self, name: str) -> str:
        choice = self.choices.get(name, {})
        return f"{self.baselines[name].describe()}, fitted on {choice.get('fitted_on', 'whole scans')}"


@single_threaded_blas
def fit_baselines(
    train: ScanSet,
    validation: ScanSet,
    segment_length: int | None = None,
    names=BASELINE_NAMES,
    components=PCA_COMPONENTS,
) -> BaselineSelection:
    """Fit every baseline on the training scans; choose PCA's k, each baseline's variant and the strongest on
    validation, scored at `segment_length` (validation scans cut into segments of it when given).

    With a segment length, every fitted baseline is tried fitted on the whole training scans and on their segments
    of that length (on real data either can be better), and validation keeps the better. Validation needs subjects
    with scans in two sessions; without any, every baseline scores NaN and `raw` is the strongest.
    """
    scored = validation.segments(segment_length)
    validation_fc = fc_features(scored.series) if len(scored) else None
    fits = {"whole scans": train}
    if segment_length is not None:
        segments = train.segments(segment_length)
        if len(segments) >= 2:
            fits[f"{segment_length}-frame segments"] = segments

    def score(features) -> tuple[float, float]:
        if validation_fc is None:
            return (float("nan"), float("nan"))
        found = pairwise_identification(features, scored.subjects, scored.sessions)
        return (found["rank1"], found["map"] if np.isfinite(found["map"]) else -np.inf)

    def better(value, best) -> bool:
        return best is None or (np.isfinite(value[0]) and not value <= best[0])

    baselines, scores, choices, decompositions = {}, {}, {}, {}
    for name in names:
        best = None
        for fitted_on, rows in fits.items() if name != "raw" else [("whole scans", train)]:
            if name in ("pca_removed", "pca_kept"):
                smallest = 2 if name == "pca_kept" else 1  # Pearson over one coordinate is undefined
                grid = [k for k in components if smallest <= k < len(rows)] or [smallest]
                if fitted_on not in decompositions:  # one decomposition per training set, sliced for every k
                    decompositions[fitted_on] = PcaDenoisedFc(max(components)).fit(rows, fc_features(rows.series))
                for k in grid:
                    candidate = decompositions[fitted_on].with_components(k, keep=name == "pca_kept")
                    value = score(candidate.transform_centred(candidate.centre(validation_fc, scored.states)))
                    if better(value, best):
                        best = (value, candidate, {"components": k, "fitted_on": fitted_on})
                continue
            candidate = make_baseline(name).fit(rows)
            value = score(candidate.transform(scored) if validation_fc is not None else None)
            if better(value, best):
                best = (value, candidate, {"fitted_on": fitted_on})
        (rank1, average_precision), baselines[name], choices[name] = best
        scores[name], choices[name]["validation_map"] = rank1, average_precision
    finite = {name: scores[name] for name in scores if np.isfinite(scores[name])}
    order = [name for name in TIE_ORDER if name in names]
    rank = {name: (finite[name], choices[name]["validation_map"], -order.index(name)) for name in finite}
    strongest = max(rank, key=rank.get) if finite else names[0]
    return BaselineSelection(baselines, scores, strongest, segment_length, choices)


@single_threaded_blas
def baseline_identification(
    train: ScanSet, validation: ScanSet, test: ScanSet | None = None, segment_length: int | None = None
) -> dict:
    """Identification by every baseline on `test` (default: the validation scans themselves), fitted on `train`
    and chosen on `validation`, at `segment_length`.

    Returns:
        `{"strongest": name, "selection": BaselineSelection, "results": {name: pairwise_identification(...)}}`.
    """
    selection = fit_baselines(train, validation, segment_length)
    scored = (validation if test is None else test).segments(segment_length)
    results = {
        name: pairwise_identification(features, scored.subjects, scored.sessions)
        for name, features in selection.transform(scored).items()
    }
    return {"strongest": selection.strongest, "selection": selection, "results": results}


def best_in_hindsight(results: dict, strongest: str) -> str:
    """The baseline with the highest Rank-1 in `results` (`{name: {"rank1": ...}}`, scored on test subjects): the
    strictest comparison for a model. Validation's choice `strongest` wins a tie, so hindsight is named only where it
    differs in score."""
    return max(results, key=lambda name: (results[name]["rank1"], name == strongest))


# ------------------------------------------------------------------------------------------------- phenotypes
def fit_ridge(features: np.ndarray, targets: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with an unpenalised intercept, solved in the dual (features ≫ samples for FC)."""
    mean_x, mean_y = features.mean(axis=0), targets.mean(axis=0)
    x, y = features - mean_x, targets - mean_y
    gram = x @ x.T
    dual = np.linalg.solve(gram + alpha * np.eye(len(x)), y)
    weights = x.T @ dual
    return weights, mean_y - mean_x @ weights


def fit_ridge_by_validation(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, alphas=ALPHAS
) -> tuple[np.ndarray, float, float]:
    """Ridge fitted on the training rows for every alpha; the one with the lowest validation MAE wins.

    The grid is relative to the features' scale (`alpha × mean squared row norm`), so one grid suits FC, tangent
    vectors, PCA coordinates and signatures alike.

    Args:
        train_x (`np.ndarray` of shape `(n, features)`), train_y (`np.ndarray` of shape `(n,)`): fitting rows.
        val_x (`np.ndarray` of shape `(m, features)`), val_y (`np.ndarray` of shape `(m,)`): selection rows.

    Returns:
        `(weights, bias, alpha)`, `alpha` on that relative scale.
    """
    centred = train_x - train_x.mean(axis=0)
    scale = float(np.mean(np.sum(centred**2, axis=1))) or 1.0
    fits = [fit_ridge(train_x, train_y, alpha * scale) for alpha in alphas]
    errors = [np.abs(val_x @ weights + bias - val_y).mean() for weights, bias in fits]
    best = int(np.argmin(errors))
    weights, bias = fits[best]
    return weights, float(bias), float(alphas[best])


@single_threaded_blas
def ridge_baselines(
    fit_scans: ScanSet,
    labelled: dict[str, ScanSet],
    targets: dict[str, np.ndarray],
    names=BASELINE_NAMES,
    components=(2, 4, 8, 16, 32, 64),
) -> dict:
    """Ridge on each baseline's features; validation chooses alpha, PCA's k and the strongest baseline.

    Args:
        fit_scans: the scans the features are fitted on (training subjects, labelled or not).
        labelled: `train`, `validation` and `test` scan sets; ridge is fitted on `train` rows with a target.
        targets: per split, `(rows, columns)` floats, NaN where missing (left out of fitting and scoring).

    Returns:
        `{"baselines": {name: {"validation_mae", "test_mae", "test_pearson_r", "alpha", "components"}},
        "strongest": name, "test_mae", "test_pearson_r"}` (the last two: the strongest baseline's), and
        `raw_test_mae` / `raw_test_pearson_r`. Metrics are averaged over target columns.
    """
    from ..training.metrics import compute

    fit_fc = fc_features(fit_scans.series)
    fc = {split: fc_features(scans.series) for split, scans in labelled.items()}
    candidates, full = [], None
    for name in names:
        if name in ("pca_removed", "pca_kept"):
            if full is None:  # one decomposition, sliced for both modes and every k
                full = PcaDenoisedFc(max(components)).fit(fit_scans, fit_fc)
            for k in [k for k in components if k < len(fit_scans)] or [1]:
                model = full.with_components(k, keep=name == "pca_kept")
                features = {s: model.transform_centred(model.centre(fc[s], labelled[s].states)) for s in fc}
                candidates.append((name, k, features))
        elif name == "raw":
            candidates.append((name, None, fc))
        else:
            model = make_baseline(name).fit(fit_scans)
            candidates.append((name, None, {split: model.transform(scans) for split, scans in labelled.items()}))
    results: dict = {}
    for name, k, features in candidates:
        found = _ridge_scores(features, targets, compute)
        if name not in results or found["validation_mae"] < results[name]["validation_mae"]:
            results[name] = {**found, "components": k}
    strongest = min(results, key=lambda name: results[name]["validation_mae"])
    return {
        "baselines": results,
        "strongest": strongest,
        "test_mae": results[strongest]["test_mae"],
        "test_pearson_r": results[strongest]["test_pearson_r"],
        "raw_test_mae": results["raw"]["test_mae"] if "raw" in results else float("nan"),
        "raw_test_pearson_r": results["raw"]["test_pearson_r"] if "raw" in results else float("nan"),
    }


def _ridge_scores(features: dict, targets: dict, compute) -> dict:
    validation_maes, maes, rs, alphas = [], [], [], []
    for column in range(targets["train"].shape[1]):
        observed = {name: np.isfinite(t[:, column]) for name, t in targets.items()}
        (xt, yt), (xv, yv), (xs, ys) = (
            (features[name][observed[name]], targets[name][observed[name], column])
            for name in ("train", "validation", "test")
        )
        weights, bias, alpha = fit_ridge_by_validation(xt, yt, xv, yv)
        validation_maes.append(float(np.abs(xv @ weights + bias - yv).mean()))
        prediction = xs @ weights + bias
        maes.append(float(np.abs(prediction - ys).mean()))
        rs.append(compute("pearson_r", predictions=prediction, references=ys))
        alphas.append(alpha)
    return {
        "validation_mae": float(np.mean(validation_maes)),
        "test_mae": float(np.mean(maes)),
        "test_pearson_r": float(np.mean(rs)),
        "alpha": alphas,
    }
