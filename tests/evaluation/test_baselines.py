"""The classical FC baselines: what each computes, that they are fitted on training subjects only and chosen on
validation, and identification over every pair of sessions."""

import numpy as np
import pytest

from r2tnet_hf.evaluation.baselines import (
    BASELINE_NAMES,
    PcaDenoisedFc,
    RawFc,
    StateCentredFc,
    TangentFc,
    baseline_identification,
    best_in_hindsight,
    fit_baselines,
    ridge_baselines,
)
from r2tnet_hf.evaluation.fingerprinting import ScanSet, fc_features, pairwise_identification

ROIS = 10


def cohort(subjects=6, sessions=2, frames=120, seed=0, shared=2.0, own=0.6, flat=None, first=0) -> ScanSet:
    """Subjects with their own connectivity; every scan also carries a random amount of one connectivity pattern
    shared by everyone (a nuisance that raw FC is misled by)."""
    generator = np.random.default_rng(seed)
    nuisance = np.random.default_rng(99).standard_normal((ROIS, ROIS)) / np.sqrt(ROIS)
    series, names, sides, states = [], [], [], []
    for subject in range(subjects):
        mixing = np.eye(ROIS) + own * np.random.default_rng(1000 + first + subject).standard_normal((ROIS, ROIS))
        for session in range(sessions):
            scan_mixing = mixing + shared * generator.standard_normal() * nuisance
            data = scan_mixing @ generator.standard_normal((ROIS, frames))
            if flat is not None and subject == 0 and session == 0:
                data[flat] = 0.0
            series.append(data.astype(np.float32))
            names.append(f"sub-{first + subject:02d}")
            sides.append(f"ses-{session + 1}")
            states.append("rest" if session % 2 == 0 else "task")
    return ScanSet(series, names, sides, states)


def test_segments_cut_every_scan_and_count_the_frames_left():
    scans = cohort(subjects=2, frames=125)
    segments = scans.segments(50)
    assert len(segments) == 2 * 2 * 2 and all(s.shape == (ROIS, 50) for s in segments.series)
    assert segments.subjects[:2] == ["sub-00", "sub-00"] and segments.scans[:3] == [0, 0, 1]
    assert scans.frames_unused(50) == 4 * 25 and scans.frames_unused(None) == 0
    np.testing.assert_array_equal(segments.series[1], scans.series[0][:, 50:100])
    assert len(scans.segments(200)) == 0


def test_rank1_is_scored_for_every_ordered_pair_with_its_spread():
    # three subjects, three sessions; subject c's session-3 row looks like subject a
    a, b, c = np.eye(3)
    features = np.stack([a, b, c, a, b, c, a, b, a + 0.01])
    subjects = ["a", "b", "c"] * 3
    sessions = ["1"] * 3 + ["2"] * 3 + ["3"] * 3
    found = pairwise_identification(features, subjects, sessions)
    by_pair = {(p["a"], p["b"]): p["rank1"] for p in found["pairs"]}
    assert len(by_pair) == 6
    assert by_pair[("1", "2")] == 1.0 and by_pair[("1", "3")] == pytest.approx(2 / 3)
    assert by_pair[("3", "1")] == pytest.approx(2 / 3)
    values = np.array(list(by_pair.values()))
    assert found["rank1"] == pytest.approx(values.mean()) and found["rank1_std"] == pytest.approx(values.std())
    assert found["rank1_min"] == pytest.approx(2 / 3) and found["rank1_max"] == 1.0 and found["subjects"] == 3
    assert found["idiff"] > 0


def test_state_centring_subtracts_the_training_mean_of_each_state():
    train, new = cohort(), cohort(seed=1, first=20)
    baseline = StateCentredFc().fit(train)
    raw = fc_features(train.series)
    states = np.array(train.states)
    np.testing.assert_allclose(baseline.means_["rest"], raw[states == "rest"].mean(axis=0))
    expected = fc_features(new.series) - np.stack([baseline.means_[s] for s in new.states])
    np.testing.assert_allclose(baseline.transform(new), expected)
    unseen = ScanSet(new.series[:1], ["x"], ["1"], ["a task never trained on"])
    np.testing.assert_allclose(baseline.transform(unseen)[0], fc_features(new.series[:1])[0] - baseline.overall_)


def test_pca_removes_or_keeps_the_training_components():
    train, new = cohort(), cohort(seed=1, first=20)
    removed, kept = PcaDenoisedFc(3).fit(train), PcaDenoisedFc(3, keep=True).fit(train)
    np.testing.assert_allclose(removed.basis_ @ removed.basis_.T, np.eye(3), atol=1e-10)
    assert np.abs(removed.transform(new) @ removed.basis_.T).max() < 1e-10  # nothing left along them
    centred = StateCentredFc().fit(train).transform(new)
    np.testing.assert_allclose(kept.transform(new), centred @ kept.basis_.T, atol=1e-10)
    np.testing.assert_allclose(removed.with_components(2, keep=False).basis_, removed.basis_[:2])


def test_tangent_is_nilearns_and_maps_a_single_scan_like_a_group():
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.covariance import LedoitWolf

    train, new = cohort(), cohort(seed=1, first=20)
    baseline = TangentFc().fit(train)
    measure = ConnectivityMeasure(kind="tangent", cov_estimator=LedoitWolf(store_precision=False), vectorize=True,
                                  discard_diagonal=True, standardize=False)  # fmt: skip
    measure.fit([s.T.astype(np.float64) for s in train.series])
    expected = measure.transform([s.T.astype(np.float64) for s in new.series])
    np.testing.assert_allclose(baseline.transform(new), expected, atol=1e-10)
    single = ScanSet(new.series[:1], new.subjects[:1], new.sessions[:1])
    np.testing.assert_allclose(baseline.transform(single), expected[:1], atol=1e-10)


def test_baselines_are_fitted_on_training_subjects_and_chosen_on_validation():
    shape = dict(subjects=10, sessions=3, shared=3.0, own=0.6, frames=300)
    train, validation, test = cohort(**shape), cohort(seed=10, first=20, **shape), cohort(seed=20, first=40, **shape)
    selection = fit_baselines(train, validation)
    assert set(selection.baselines) == set(BASELINE_NAMES) and selection.strongest in BASELINE_NAMES
    # the fitted parameters come from the training scans only: refitting on them alone gives the same
    np.testing.assert_allclose(selection.baselines["state_centred"].overall_, fc_features(train.series).mean(axis=0))
    k = selection.choices["pca_removed"]["components"]
    np.testing.assert_allclose(
        np.abs(selection.baselines["pca_removed"].basis_), np.abs(PcaDenoisedFc(k).fit(train).basis_), atol=1e-8
    )
    # the shared nuisance misleads raw FC; the fitted baselines see past it on people they never saw
    found = baseline_identification(train, validation, test)
    assert found["strongest"] != "raw"
    assert found["results"][found["strongest"]]["rank1"] > found["results"]["raw"]["rank1"]


def test_segment_baselines_try_both_fits_and_keep_the_better():
    train, validation = cohort(frames=200), cohort(seed=1, first=20, frames=200)
    selection = fit_baselines(train, validation, segment_length=50)
    assert {choice["fitted_on"] for choice in selection.choices.values()} <= {"whole scans", "50-frame segments"}
    assert selection.segment_length == 50


def test_hindsight_names_another_baseline_only_where_it_scores_higher():
    results = {"raw": {"rank1": 1.0}, "tangent": {"rank1": 1.0}, "pca_removed": {"rank1": 0.9}}
    assert best_in_hindsight(results, "tangent") == "tangent"
    assert best_in_hindsight(results, "pca_removed") == "raw"


def test_a_flat_roi_leaves_every_baseline_finite():
    train, validation, test = cohort(flat=3), cohort(seed=1, first=20), cohort(seed=2, first=40, flat=4)
    found = baseline_identification(train, validation, test)
    assert all(np.isfinite(result["rank1"]) for result in found["results"].values())
    for name, baseline in found["selection"].baselines.items():
        assert np.isfinite(baseline.transform(test)).all(), name
    labelled = {"train": train, "validation": validation, "test": test}
    targets = {name: np.random.default_rng(3).standard_normal((len(s), 1)) for name, s in labelled.items()}
    ridge = ridge_baselines(train, labelled, targets)
    assert all(np.isfinite(r["test_mae"]) for r in ridge["baselines"].values())


def test_ridge_baselines_choose_the_strongest_on_validation_and_report_raw():
    generator = np.random.default_rng(0)
    fit = cohort(subjects=20, sessions=1, shared=0.3)
    labelled = {
        name: cohort(subjects=size, sessions=1, seed=i + 1, first=100 * (i + 1), shared=0.3)
        for i, (name, size) in enumerate((("train", 80), ("validation", 15), ("test", 15)))
    }
    # a phenotype that is a linear read-out of FC plus noise
    weights = generator.standard_normal(fc_features(fit.series[:1]).shape[1])
    targets = {n: (fc_features(s.series) @ weights)[:, None] + 0.1 * generator.standard_normal((len(s), 1))
               for n, s in labelled.items()}  # fmt: skip
    targets["train"][0, 0] = np.nan  # a missing target is left out
    found = ridge_baselines(fit, labelled, targets)
    assert found["strongest"] in found["baselines"] and np.isfinite(found["raw_test_mae"])
    best = min(found["baselines"].values(), key=lambda r: r["validation_mae"])
    assert found["test_mae"] == best["test_mae"]
    assert found["baselines"]["raw"]["test_pearson_r"] > 0.5


def test_raw_fc_needs_no_fit():
    scans = cohort(subjects=2)
    np.testing.assert_allclose(RawFc().fit(scans).transform(scans), fc_features(scans.series))
