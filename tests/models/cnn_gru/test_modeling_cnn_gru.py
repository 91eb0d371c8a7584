import torch

from r2tnet_hf import CnnGruModel
from tests.model_tester import ModelTesterMixin
from tests.models.tiny_backbones import FRAMES, cnn_gru_config, volume_inputs


class TestCnnGruModel(ModelTesterMixin):
    model_classes = (CnnGruModel,)

    def get_config(self):
        return cnn_gru_config()

    def get_inputs(self, model_class, batch_size):
        return volume_inputs(batch_size)

    def output_tensor(self, output):
        return output.last_hidden_state

    def check_output_shapes(self, model, output, inputs):
        assert output.last_hidden_state.shape == (self.batch_size, FRAMES, 32)
        assert output.pooler_output.shape == (self.batch_size, 32)


class TestCnnGruMeanPool(TestCnnGruModel):
    def get_config(self):
        return cnn_gru_config(pooling="mean")


def test_last_state_is_the_state_after_the_last_real_frame():
    model = CnnGruModel(cnn_gru_config()).eval()
    inputs = volume_inputs(2)
    inputs["attention_mask"][0, 3:] = 0
    with torch.no_grad():
        output = model(**inputs)
        short = model(**volume_inputs(1, frames=3) | {"fmri_values": inputs["fmri_values"][:1, ..., :3]})
    torch.testing.assert_close(output.pooler_output[0], short.pooler_output[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(output.pooler_output[0], output.last_hidden_state[0, 2], atol=1e-6, rtol=0)
    torch.testing.assert_close(output.pooler_output[1], output.last_hidden_state[1, -1], atol=1e-6, rtol=0)
    assert output.last_hidden_state[0, 3:].abs().max() == 0


def test_frame_order_matters():
    model = CnnGruModel(cnn_gru_config()).eval()
    inputs = volume_inputs(1)
    with torch.no_grad():
        forward = model(**inputs).pooler_output
        backward = model(**inputs | {"fmri_values": inputs["fmri_values"].flip(-1)}).pooler_output
    assert (forward - backward).abs().max() > 1e-5
