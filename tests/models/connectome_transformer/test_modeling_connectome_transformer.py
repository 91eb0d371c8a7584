import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

from r2tnet_hf import ConnectomeTransformerConfig, ConnectomeTransformerModel, FmriInputError
from r2tnet_hf.models.connectome_transformer import masked_correlation
from tests.model_tester import ModelTesterMixin
from tests.models.tiny_backbones import NUM_ROIS, connectome_transformer_config, roi_inputs


class TestConnectomeTransformerModel(ModelTesterMixin):
    model_classes = (ConnectomeTransformerModel,)

    def get_config(self):
        return connectome_transformer_config()

    def get_inputs(self, model_class, batch_size):
        return roi_inputs(batch_size)

    def output_tensor(self, output):
        return output.pooler_output  # reads every parameter, the readout included

    def check_output_shapes(self, model, output, inputs):
        assert output.last_hidden_state.shape == (self.batch_size, NUM_ROIS, 32)
        assert output.pooler_output.shape == (self.batch_size, 48)
        assert output.token_mask.shape == (self.batch_size, NUM_ROIS) and bool(output.token_mask.all())

    def expected_attention_shapes(self, model, inputs):
        return [(self.batch_size, 4, NUM_ROIS, NUM_ROIS)] * model.config.num_hidden_layers


class TestConnectomeTransformerWithoutLayers(TestConnectomeTransformerModel):
    """`num_hidden_layers=0`: connectivity → ROI tokens → readout, the same contract."""

    def get_config(self):
        return connectome_transformer_config(num_hidden_layers=0)


def test_masked_correlation_is_numpys_fisher_z_pearson_on_the_real_frames():
    values = torch.randn(2, 5, 30, dtype=torch.float64)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 21:] = False
    mask[1, 3] = False
    found = masked_correlation(values, mask).numpy()
    for row in range(2):
        real = values[row][:, mask[row]].numpy()
        expected = np.arctanh(np.clip(np.corrcoef(real), -0.999, 0.999))
        np.fill_diagonal(expected, 0.0)
        np.testing.assert_allclose(found[row], expected, atol=1e-5)
    plain = masked_correlation(values, mask, fisher_z=False).numpy()
    np.testing.assert_allclose(np.tanh(found), plain, atol=1e-5)


def test_correlations_stay_float32_under_mixed_precision():
    values, mask = torch.randn(2, NUM_ROIS, 40), torch.ones(2, 40, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = masked_correlation(values, mask)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, masked_correlation(values, mask), atol=1e-6, rtol=0)


def test_a_constant_roi_gives_zero_correlations_and_a_finite_output():
    inputs = roi_inputs(2)
    inputs["fmri_values"][0, 3] = 0.0  # what FmriProcessor makes of a flat ROI
    connectivity = masked_correlation(inputs["fmri_values"], inputs["attention_mask"].bool())
    assert connectivity[0, 3].abs().max() == 0 and connectivity[0, :, 3].abs().max() == 0
    with torch.no_grad():
        assert torch.isfinite(ConnectomeTransformerModel(connectome_transformer_config())(**inputs).pooler_output).all()


def test_the_roi_order_matters():
    """ROIs keep their identity (learned embeddings, a readout in ROI order): swapping two regions is another scan."""
    model = ConnectomeTransformerModel(connectome_transformer_config()).eval()
    inputs = roi_inputs(1)
    swapped = inputs["fmri_values"][:, [1, 0, *range(2, NUM_ROIS)]]
    with torch.no_grad():
        before = model(**inputs).pooler_output
        after = model(**{**inputs, "fmri_values": swapped}).pooler_output
    assert (after - before).abs().max() > 1e-4


def test_too_few_real_frames_for_a_correlation_is_refused():
    inputs = roi_inputs(2)
    inputs["attention_mask"][1, 2:] = 0
    with pytest.raises(FmriInputError, match=r"attention_mask: expected at least 3 real frames .* rows \[1\]"):
        ConnectomeTransformerModel(connectome_transformer_config())(**inputs)


def test_a_readout_too_large_for_grayordinates_is_refused_with_a_hint():
    with pytest.raises(StrictDataclassClassValidationError, match="parcellate dense data first"):
        ConnectomeTransformerConfig(num_rois=91282)


def test_the_token_width_must_split_into_heads():
    with pytest.raises(
        StrictDataclassClassValidationError, match=r"embed_dim \(30\) must be a multiple of num_attention_heads \(4\)"
    ):
        connectome_transformer_config(embed_dim=30)
