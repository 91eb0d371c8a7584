import numpy as np
import pytest

from r2tnet_hf.data.io import read_series
from r2tnet_hf.data.synthetic import individual_differences, make_synthetic_cohort


def test_modes_put_individual_differences_in_a_k_dimensional_space():
    readout = np.zeros((6, 6))
    own, scores = individual_differences(np.random.default_rng(0), 20, 6, readout, modes=3, idiosyncratic=0.0)
    assert np.linalg.matrix_rank(np.stack([b.ravel() for b in own])) == 3
    assert scores.shape == (20,)
    own, _ = individual_differences(np.random.default_rng(0), 20, 6, readout, modes=3, idiosyncratic=0.3)
    assert np.linalg.matrix_rank(np.stack([b.ravel() for b in own])) == 20  # the idiosyncratic part is the subject's
    own, _ = individual_differences(np.random.default_rng(0), 20, 6, readout, modes=None)
    assert np.linalg.matrix_rank(np.stack([b.ravel() for b in own])) == 20


def test_with_modes_the_phenotype_is_a_linear_read_out_of_the_loadings():
    """Same seed, so the same loadings: the raw phenotype is exactly linear in them (noise is added later)."""
    own, scores = individual_differences(np.random.default_rng(1), 40, 5, np.zeros((5, 5)), modes=4, idiosyncratic=0)
    vectors = np.stack([b.ravel() for b in own])
    # each subject's B_s is loadings @ modes, so the phenotype is linear in vec(B_s) too: a least-squares fit is exact
    coefficients, *_ = np.linalg.lstsq(vectors, scores, rcond=None)
    np.testing.assert_allclose(vectors @ coefficients, scores, atol=1e-8)


def test_a_cohort_with_modes_is_written_and_reproducible(tmp_path):
    a = make_synthetic_cohort(tmp_path / "a", subjects=3, sessions=1, rois=5, frames=30, modes=2, seed=4)
    b = make_synthetic_cohort(tmp_path / "b", subjects=3, sessions=1, rois=5, frames=30, modes=2, seed=4)
    assert [r.phenotypes for r in a.records] == [r.phenotypes for r in b.records]
    first = read_series(tmp_path / "a" / a.records[0].path).data
    np.testing.assert_array_equal(first, read_series(tmp_path / "b" / b.records[0].path).data)
    with pytest.raises(ValueError, match="--modes: expected none, or 1 or more, found 0"):
        make_synthetic_cohort(tmp_path / "c", subjects=2, modes=0)
    with pytest.raises(ValueError, match=r"--idiosyncratic: expected a weight in \[0, 1\], found 1.5"):
        make_synthetic_cohort(tmp_path / "c", subjects=2, modes=2, idiosyncratic=1.5)


def test_task_variation_across_people_is_what_the_settings_state(tmp_path):
    from r2tnet_hf.data.manifest import read_manifest

    plain = make_synthetic_cohort(tmp_path / "plain", subjects=3, sessions=1, rois=6, frames=80, seed=4)
    varied = make_synthetic_cohort(
        tmp_path / "varied", subjects=3, sessions=1, rois=6, frames=80, seed=4, task_amplitude_spread=0.5,
        task_map_spread=0.5, task_connectivity=0.5, state_interaction=0.3,
    )  # fmt: skip

    def data(manifest, modality):
        manifest = read_manifest(manifest.source)
        return [read_series(manifest.resolve(r)).data for r in manifest.records if r.modality == modality]

    # rest scans do not depend on the task settings; task scans do
    for a, b in zip(data(plain, "rest"), data(varied, "rest")):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(data(plain, "task")[0], data(varied, "task")[0], atol=1e-3)
    with pytest.raises(ValueError, match="--state-interaction: expected >= 0, found -1"):
        make_synthetic_cohort(tmp_path / "bad", subjects=2, state_interaction=-1)
