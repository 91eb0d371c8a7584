import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from sklearn.covariance import LedoitWolf

from r2tnet_hf import FmriInputError, R2TNetConfig, R2TNetModel, TangentConnectomeConfig, TangentConnectomeModel
from r2tnet_hf.evaluation.baselines import TangentFc
from r2tnet_hf.evaluation.fingerprinting import ScanSet
from r2tnet_hf.models.tangent_connectome import masked_ledoit_wolf
from r2tnet_hf.training.reference import fit_reference
from tests.model_tester import ModelTesterMixin
from tests.models.tiny_backbones import NUM_ROIS, roi_inputs, tangent_connectome_config


def training_scans(subjects=4, scans=3, frames=60, seed=0, nuisance=0.0) -> ScanSet:
    """Subjects with their own mixing, several scans each: within-subject variation to fit. `nuisance` adds, per
    scan, a random amount of one connectivity pattern shared by everyone (a state or scanner effect)."""
    generator = np.random.default_rng(seed)
    shared = np.random.default_rng(123).standard_normal((NUM_ROIS, NUM_ROIS)) / np.sqrt(NUM_ROIS)
    series, names = [], []
    for subject in range(subjects):
        mixing = np.eye(NUM_ROIS) + 0.5 * generator.standard_normal((NUM_ROIS, NUM_ROIS)) / np.sqrt(NUM_ROIS)
        for _ in range(scans):
            scan_mixing = mixing + nuisance * generator.standard_normal() * shared
            series.append((scan_mixing @ generator.standard_normal((NUM_ROIS, frames))).astype(np.float32))
            names.append(f"s{subject}")
    return ScanSet(series, names, [f"run{i % scans}" for i in range(len(series))])


def fitted(config=None) -> TangentConnectomeModel:
    model = TangentConnectomeModel(config or tangent_connectome_config())
    fit_reference(model, training_scans())
    return model


class TestTangentConnectomeModel(ModelTesterMixin):
    model_classes = (TangentConnectomeModel,)

    def get_config(self):
        return tangent_connectome_config()

    def build(self, model_class):
        return fitted().eval()

    def get_inputs(self, model_class, batch_size):
        return roi_inputs(batch_size)

    def output_tensor(self, output):
        return output.pooler_output

    def check_output_shapes(self, model, output, inputs):
        assert output.pooler_output.shape == (self.batch_size, NUM_ROIS * (NUM_ROIS - 1) // 2)
        assert output.last_hidden_state.shape == (self.batch_size, NUM_ROIS, NUM_ROIS)

    def test_every_parameter_gets_a_gradient_and_no_nan(self):
        model = fitted().train()  # the within-subject scales act on fitted directions only
        output = model(**roi_inputs(self.batch_size)).pooler_output
        output.square().mean().backward()
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
            assert torch.isfinite(parameter.grad).all(), name


def test_ledoit_wolf_over_the_real_frames_is_scikit_learns():
    values = torch.randn(2, 6, 30, dtype=torch.float64)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    found = masked_ledoit_wolf(values, mask).numpy()
    for row in range(2):
        real = values[row][:, mask[row]].numpy()
        np.testing.assert_allclose(found[row], LedoitWolf().fit(real.T).covariance_, atol=1e-12)


def test_with_identity_shrinkage_the_features_are_the_tangent_baseline():
    """nilearn's tangent space at the same reference, centred on the training mean: equal to float32 precision."""
    scans = training_scans()
    model = TangentConnectomeModel(tangent_connectome_config(shrinkage_target="identity", within_subject_components=0))
    fit_reference(model, scans)
    baseline = TangentFc().fit(scans)
    new = training_scans(subjects=3, seed=5)
    expected = baseline.transform(new) - baseline.transform(scans).mean(axis=0)
    with torch.no_grad():
        found = model(torch.from_numpy(np.stack(new.series)), repetition_time=2.0).pooler_output.double().numpy()
    np.testing.assert_allclose(found, expected, atol=2e-5)


def test_the_fit_shrinks_within_subject_directions_and_the_correction_starts_at_zero():
    model = fitted()
    shrinkage = model.within_subject_shrinkage
    assert int(model.reference_scans) == 12
    assert bool((shrinkage > 0).all()) and bool((shrinkage <= 1).all()) and float(shrinkage.min()) < 0.9
    basis = model.within_subject_basis.double()
    torch.testing.assert_close(basis @ basis.T, torch.eye(4, dtype=torch.float64), atol=1e-5, rtol=0)
    assert float(model.regularization_loss().detach()) == 0.0
    with torch.no_grad():
        model.roi_log_gain.fill_(0.1)
    assert float(model.regularization_loss().detach()) == pytest.approx(NUM_ROIS * 0.01, rel=1e-5)


def test_the_within_subject_shrinkage_makes_a_persons_scans_closer():
    """A nuisance shared by everyone varies each person's scans: fitted on training people, the shrinkage brings
    new people's scans together relative to other people's (it removes nothing when scans differ by noise alone)."""
    train = training_scans(subjects=6, frames=200, nuisance=1.5)
    model = TangentConnectomeModel(tangent_connectome_config(within_subject_components=2))
    fit_reference(model, train)
    unshrunk = TangentConnectomeModel(tangent_connectome_config(within_subject_components=0))
    fit_reference(unshrunk, train)
    new = training_scans(subjects=4, frames=200, seed=9, nuisance=1.5)
    values = torch.from_numpy(np.stack(new.series))
    subjects = np.array(new.subjects)

    def ratio(network):
        with torch.no_grad():
            features = network(values, repetition_time=2.0).pooler_output.double().numpy()
        distance = np.linalg.norm(features[:, None] - features[None], axis=-1)
        same = subjects[:, None] == subjects[None]
        off = ~np.eye(len(subjects), dtype=bool)
        return distance[same & off].mean() / distance[~same].mean()

    assert ratio(model) < ratio(unshrunk)


def test_as_the_r2tnet_backbone_the_features_are_the_signature():
    backbone = tangent_connectome_config()
    config = R2TNetConfig(backbone_config=backbone, signature_dim=backbone.hidden_size, projection_num_layers=0)
    model = R2TNetModel(config).eval()
    inputs = roi_inputs(2)
    with torch.no_grad():
        output = model(**inputs)
    torch.testing.assert_close(output.signature, torch.nn.functional.normalize(output.pooler_output, dim=-1))
    with pytest.raises(StrictDataclassClassValidationError, match="signature_dim must be"):
        R2TNetConfig(backbone_config=backbone, signature_dim=2048, projection_num_layers=0)


def test_config_is_checked():
    assert TangentConnectomeConfig(num_rois=119).hidden_size == 7021
    with pytest.raises(StrictDataclassClassValidationError, match="num_rois·"):
        TangentConnectomeConfig(num_rois=10, hidden_size=64)
    with pytest.raises(StrictDataclassClassValidationError, match="shrinkage_target"):
        TangentConnectomeConfig(shrinkage_target="diagonal")


def test_bad_inputs_are_refused_with_one_line():
    model = fitted().eval()
    inputs = roi_inputs(2)
    inputs["attention_mask"][0, 2:] = 0
    with pytest.raises(FmriInputError, match="at least 3 real frames"):
        model(**inputs)
    with pytest.raises(FmriInputError, match="repetition_time"):
        model(roi_inputs(1)["fmri_values"])
    with pytest.raises(ValueError, match="no attention"):
        model(**roi_inputs(1), output_attentions=True)


def test_a_flat_roi_gives_a_finite_output():
    model = fitted().eval()
    inputs = roi_inputs(2)
    inputs["fmri_values"][0, 3] = 0.0
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).pooler_output).all()
