"""Identification, ICC, FC baseline and report: known constructions with values worked out by hand."""

import numpy as np
import pytest

from r2tnet_hf.errors import FmriInputError
from r2tnet_hf.evaluation import (
    fc_features,
    fingerprint_report,
    functional_connectivity,
    icc,
    identification,
    plot_similarity,
)


@pytest.fixture(scope="module")
def basis():
    """Orthonormal, zero-mean rows: Pearson correlation between their combinations is their cosine."""
    generator = np.random.default_rng(0)
    matrix = np.column_stack([np.ones(12), generator.standard_normal((12, 8))])
    q, _ = np.linalg.qr(matrix)
    return q[:, 1:].T  # (8, 12), each row orthogonal to the constant vector


def test_a_swap_gives_the_hand_computed_rank1_and_map(basis):
    q = basis
    queries = q[:4]
    # B row j looks most like A row pi(j) and second most like A row sigma(j).
    database = np.stack([q[0] + 0.5 * q[3], q[2] + 0.5 * q[1], q[1] + 0.5 * q[2], q[3] + 0.5 * q[0]])
    subjects = ["s0", "s1", "s2", "s3"]
    result = identification(queries, database, subjects, subjects)
    # s0, s3 found first; s1, s2 find each other first and themselves second: AP 1, 1/2, 1/2, 1.
    assert result["rank1_a2b"] == pytest.approx(0.5) and result["rank1_b2a"] == pytest.approx(0.5)
    assert result["map_a2b"] == pytest.approx(0.75) and result["map_b2a"] == pytest.approx(0.75)
    assert result["unmatched_a"] == [] and result["queries_a2b"] == 4
    by_row = identification(queries, database, range(4), range(4))  # row i of each side is subject i
    assert by_row["rank1_a2b"] == pytest.approx(0.5)
    perfect = identification(queries, queries + 0.01 * q[4:8], subjects, subjects)
    assert perfect["rank1_a2b"] == 1.0 and perfect["map"] == 1.0


def test_several_rows_per_subject_and_subjects_on_one_side_only(basis):
    q = basis
    queries = np.stack([q[0], q[1], q[5]])
    query_subjects = ["s0", "s1", "s5"]  # s5 has no row in the database
    database = np.stack([q[0], q[0] + 0.5 * q[1], q[1] + 0.2 * q[0], q[1] + 0.7 * q[2], q[3]])
    database_subjects = ["s0", "s1", "s0", "s1", "s7"]  # s7 has no query
    result = identification(queries, database, query_subjects, database_subjects)
    # A→B. s0: order B0, B1, B2, ... relevant B0, B2 at ranks 1, 3 → AP (1 + 2/3)/2, hit.
    #      s1: order B2 (.98), B3 (.82), B1 (.45) ... relevant at ranks 2, 3 → AP (1/2 + 2/3)/2, miss.
    assert result["rank1_a2b"] == pytest.approx(0.5)
    assert result["map_a2b"] == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    # B→A. B0 hit (AP 1); B1 best A0, A1 second (1/2); B2 best A1, A0 second (1/2); B3 hit (1).
    assert result["rank1_b2a"] == pytest.approx(0.5) and result["map_b2a"] == pytest.approx(0.75)
    assert result["map"] == pytest.approx((result["map_a2b"] + 0.75) / 2)
    assert result["unmatched_a"] == ["s5"] and result["unmatched_b"] == ["s7"]
    assert result["queries_a2b"] == 2 and result["queries_b2a"] == 4
    assert result["similarity"].shape == (3, 5)


def test_identification_refuses_mismatched_input(basis):
    with pytest.raises(FmriInputError, match="one subject per row"):
        identification(basis[:3], basis[:3], ["a", "b"], ["a", "b", "c"])
    with pytest.raises(FmriInputError, match="same number of features"):
        identification(basis[:3], basis[:3, :5], ["a", "b", "c"], ["a", "b", "c"])
    with pytest.raises(FmriInputError, match="none in common"):
        identification(basis[:2], basis[2:4], ["a", "b"], ["c", "d"])


def reference_icc31(x1, x2):
    """Shrout & Fleiss ICC(3,1) for k = 2 sessions, written out with loops."""
    n, k = len(x1), 2
    rows = [[a, b] for a, b in zip(x1, x2)]
    grand = sum(map(sum, rows)) / (n * k)
    ss_subjects = k * sum((sum(r) / k - grand) ** 2 for r in rows)
    ss_sessions = n * sum((sum(r[j] for r in rows) / n - grand) ** 2 for j in range(k))
    ss_total = sum((v - grand) ** 2 for r in rows for v in r)
    ms_subjects = ss_subjects / (n - 1)
    ms_error = (ss_total - ss_subjects - ss_sessions) / ((n - 1) * (k - 1))
    return (ms_subjects - ms_error) / (ms_subjects + (k - 1) * ms_error)


def test_icc31_matches_the_formula_and_ignores_a_session_offset():
    generator = np.random.default_rng(3)
    trait = generator.standard_normal((10, 5))
    first = trait + 0.5 * generator.standard_normal((10, 5))
    second = trait + 0.5 * generator.standard_normal((10, 5))
    result = icc(first, second)
    expected = [reference_icc31(first[:, d].tolist(), second[:, d].tolist()) for d in range(5)]
    np.testing.assert_allclose(result["per_dimension"], expected, atol=1e-12)
    assert result["mean"] == pytest.approx(np.mean(expected)) and result["median"] == pytest.approx(np.median(expected))
    offset = icc(first, first + 3.0)  # consistency: a constant shift between sessions is not an error
    np.testing.assert_allclose(offset["per_dimension"], 1.0, atol=1e-12)
    constant = icc(np.ones((4, 2)), np.ones((4, 2)))
    assert np.isnan(constant["per_dimension"]).all() and np.isnan(constant["mean"])
    with pytest.raises(FmriInputError):
        icc(first, second[:5])


def test_fc_features_and_the_report_put_model_and_fc_side_by_side(basis, tmp_path):
    generator = np.random.default_rng(4)
    scans = [generator.standard_normal((6, 50)) for _ in range(4)]
    fc = fc_features(scans)
    assert fc.shape == (4, 15)
    np.testing.assert_allclose(fc[2], functional_connectivity(scans[2]))
    with pytest.raises(FmriInputError, match="same number of ROIs"):
        fc_features([scans[0], generator.standard_normal((5, 50))])

    q = basis
    model_a = q[:4]
    model_b = np.stack([q[0] + 0.5 * q[3], q[2] + 0.5 * q[1], q[1] + 0.5 * q[2], q[3] + 0.5 * q[0]])
    fc_a, fc_b = q[4:8], q[4:8] + 0.05 * q[:4]
    subjects = ["s0", "s1", "s2", "s3"]
    report = fingerprint_report(model_a, model_b, fc_a, fc_b, subjects, subjects)
    assert report["model_rank1_a2b"] == pytest.approx(0.5) and report["model_map"] == pytest.approx(0.75)
    assert report["fc_rank1_a2b"] == 1.0 and report["fc_rank1_b2a"] == 1.0 and report["fc_map"] == 1.0
    assert report["icc_mean"] == pytest.approx(icc(model_a, model_b)["mean"])
    assert report["subjects"] == 4 and report["unmatched_a"] == []

    path = tmp_path / "plots" / "similarity.png"
    plot_similarity(report_similarity := np.corrcoef(model_a, model_b)[:4, 4:], subjects, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["similarity.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="labels"):
        plot_similarity(report_similarity, subjects[:3], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_similarity_returns_the_figure_with_its_labels(tmp_path):
    similarity = np.eye(3)
    figure = plot_similarity(
        similarity,
        ["s0", "s1", "s2"],
        tmp_path / "similarity.png",
        title="R2T-Net signatures",
        axis_labels=("subjects, rest scans", "subjects, task scans"),
        limits=(-1.0, 1.0),
        colorbar_label="Pearson r between the two scans' signatures",
    )
    axes, colorbar = figure.axes
    assert axes.get_title() == "R2T-Net signatures"
    assert (axes.get_ylabel(), axes.get_xlabel()) == ("subjects, rest scans", "subjects, task scans")
    assert colorbar.get_ylabel() == "Pearson r between the two scans' signatures"
    assert axes.images[0].get_clim() == (-1.0, 1.0)


def test_similarity_plots_are_titled_in_words_on_one_colour_scale(tmp_path):
    from r2tnet_hf.evaluation.fingerprint_scans import similarity_plots
    from r2tnet_hf.evaluation.fingerprinting import ScanSet

    generator = np.random.default_rng(3)
    subjects = ["sub-1", "sub-2", "sub-3"]
    series = [generator.standard_normal((6, 40)) for _ in range(6)]
    scans = ScanSet(series, subjects * 2, ["ses-1"] * 3 + ["ses-2"] * 3)
    signatures = generator.standard_normal((6, 16))
    figures = similarity_plots(signatures, scans, None, tmp_path, "session", held_out=True)
    assert sorted(figures) == ["similarity.png", "similarity_baseline.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(figures)  # written, no temporaries left
    model, baseline = (figures[name].axes for name in ("similarity.png", "similarity_baseline.png"))
    assert model[0].get_title() == (
        "R2T-Net signatures\nsimilarity, session ses-1 vs session ses-2, 3 held-out subjects"
    )
    assert baseline[0].get_title().startswith("Raw FC (Finn et al. 2015)\nsimilarity, session ses-1 vs session ses-2")
    for axes, colours in ((model, "signatures"), (baseline, "raw FC")):
        assert (axes[0].get_ylabel(), axes[0].get_xlabel()) == ("subjects, session ses-1", "subjects, session ses-2")
        assert axes[1].get_ylabel() == f"Pearson r between the two scans' {colours}"
    assert model[0].images[0].get_clim() == baseline[0].images[0].get_clim()  # one colour scale for both
    # rest vs task, subjects not held out (no splits): the axes name the modality
    scans = ScanSet(series, subjects * 2, ["rest"] * 3 + ["task"] * 3)
    figures = similarity_plots(signatures, scans, None, tmp_path, "modality", held_out=False)
    axes = figures["similarity.png"].axes[0]
    assert axes.get_title().endswith("rest scans vs task scans, 3 subjects")
    assert axes.get_ylabel() == "subjects, rest scans"
