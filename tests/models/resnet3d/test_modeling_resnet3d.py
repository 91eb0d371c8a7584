import torch

from r2tnet_hf import ResNet3DConfig, ResNet3DModel
from tests.model_tester import ModelTesterMixin
from tests.models.tiny_backbones import FRAMES, resnet3d_config, volume_inputs


class TestResNet3DModel(ModelTesterMixin):
    model_classes = (ResNet3DModel,)

    def get_config(self):
        return resnet3d_config()

    def get_inputs(self, model_class, batch_size):
        return volume_inputs(batch_size)

    def output_tensor(self, output):
        return output.pooler_output

    def check_output_shapes(self, model, output, inputs):
        assert output.last_hidden_state.shape == (self.batch_size, FRAMES, 32)
        assert output.pooler_output.shape == (self.batch_size, 32)


def test_layouts():
    assert ResNet3DConfig().depths == [2, 2, 2, 2]
    assert ResNet3DConfig(layout="r3d_34").depths == [3, 4, 6, 3]
    model = ResNet3DModel(resnet3d_config(layout="r3d_34", depths=None, hidden_sizes=[8, 8, 8, 16]))
    assert [len(stage.blocks) for stage in model.stages] == [3, 4, 6, 3]
    assert model.config.hidden_size == 16


def test_padded_frames_are_skipped_even_in_training():
    """Padded frames never reach the CNN, so they cannot shift the batch-norm statistics of the real ones."""
    model = ResNet3DModel(resnet3d_config()).train()
    real = volume_inputs(2, frames=4)
    padded = volume_inputs(2, frames=6)
    padded["fmri_values"][..., :4] = real["fmri_values"]
    padded["attention_mask"][:, 4:] = 0
    alone = model(**real)
    with_padding = model(**padded)
    torch.testing.assert_close(with_padding.pooler_output, alone.pooler_output, atol=1e-5, rtol=0)
    assert with_padding.last_hidden_state[:, 4:].abs().max() == 0
