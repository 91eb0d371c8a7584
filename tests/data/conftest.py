import pytest

from r2tnet_hf.data.synthetic import make_synthetic_cohort


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory):
    """6 subjects × 2 sessions × (rest, task), 12 ROIs × 96 frames at TR 0.8 s, with a phenotype."""
    folder = tmp_path_factory.mktemp("synthetic")
    make_synthetic_cohort(folder, subjects=6, sessions=2, rois=12, frames=96, seed=3)
    return folder
