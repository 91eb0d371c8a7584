import pytest
import torch

from r2tnet_hf import FmriInputError, Vit4DModel
from tests.model_tester import ModelTesterMixin
from tests.models.tiny_backbones import FRAMES, vit4d_config, volume_inputs


class TestVit4DModel(ModelTesterMixin):
    model_classes = (Vit4DModel,)

    def get_config(self):
        return vit4d_config()

    def get_inputs(self, model_class, batch_size):
        return volume_inputs(batch_size)

    def output_tensor(self, output):
        return output.last_hidden_state

    def check_output_shapes(self, model, output, inputs):
        tokens = 2 * 2 * 2 * (FRAMES // 2)  # 8³ / 4³ tubelets × 6 / 2 frames
        assert output.last_hidden_state.shape == (self.batch_size, tokens, 32)
        assert output.pooler_output.shape == (self.batch_size, 32)
        assert output.token_mask.shape == (self.batch_size, tokens)

    def expected_attention_shapes(self, model, inputs):
        tokens = 2 * 2 * 2 * (FRAMES // 2) + (model.config.pooling == "cls")
        return [(self.batch_size, 4, tokens, tokens)] * 2


class TestVit4DWithClsPool(TestVit4DModel):
    def get_config(self):
        return vit4d_config(pooling="cls")

    def check_output_shapes(self, model, output, inputs):
        assert output.last_hidden_state.shape == (self.batch_size, 1 + 24, 32)
        torch.testing.assert_close(output.pooler_output, output.last_hidden_state[:, 0])


def test_wrong_volume_size_names_both_sizes():
    model = Vit4DModel(vit4d_config())
    with pytest.raises(FmriInputError, match=r"input volume is \(8, 8, 7\) but the model expects \(8, 8, 8\)"):
        model(**volume_inputs(1, size=(8, 8, 7)))


def test_appended_masked_frames_leave_the_pool_unchanged():
    """5 real frames (a partial last tubelet) alone, or followed by 5 masked frames of garbage."""
    model = Vit4DModel(vit4d_config()).eval()
    real = volume_inputs(2, frames=5)
    padded = volume_inputs(2, frames=10)
    padded["fmri_values"][..., :5] = real["fmri_values"]
    padded["attention_mask"][:, 5:] = 0
    with torch.no_grad():
        alone, with_padding = model(**real), model(**padded)
    torch.testing.assert_close(with_padding.pooler_output, alone.pooler_output, atol=1e-5, rtol=0)
    assert with_padding.token_mask.sum() == alone.token_mask.sum()


def test_time_positions_are_in_seconds():
    model = Vit4DModel(vit4d_config()).eval()
    inputs = volume_inputs(1)
    with torch.no_grad():
        fast = model(**{**inputs, "repetition_time": 0.8}).pooler_output
        slow = model(**{**inputs, "repetition_time": 2.0}).pooler_output
    assert (fast - slow).abs().max() > 1e-5
