import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from r2tnet_hf import FmriInputError, FmriProcessor, PerceiverFmriModel
from tests.model_tester import ModelTesterMixin
from tests.models.tiny_backbones import (
    NUM_ROIS,
    perceiver_config,
    perceiver_volume_config,
    roi_inputs,
    volume_inputs,
)


class TestPerceiverFmriRoi(ModelTesterMixin):
    model_classes = (PerceiverFmriModel,)

    def get_config(self):
        return perceiver_config()

    def get_inputs(self, model_class, batch_size):
        return roi_inputs(batch_size)

    def output_tensor(self, output):
        return output.last_hidden_state

    def check_output_shapes(self, model, output, inputs):
        assert output.last_hidden_state.shape == (self.batch_size, 8, 32)
        torch.testing.assert_close(output.pooler_output, output.last_hidden_state.mean(dim=1))

    def expected_attention_shapes(self, model, inputs):
        return [(self.batch_size, 4, 8, 8)] * 2  # the latent self-attention layers


class TestPerceiverFmriVolume(TestPerceiverFmriRoi):
    def get_config(self):
        return perceiver_volume_config()

    def get_inputs(self, model_class, batch_size):
        return volume_inputs(batch_size)


@pytest.mark.parametrize(
    ("make_config", "make_inputs"), [(perceiver_config, roi_inputs), (perceiver_volume_config, volume_inputs)]
)
def test_chunked_cross_attention_equals_one_chunk(make_config, make_inputs):
    one_chunk = PerceiverFmriModel(make_config(input_chunk_size=10**6)).eval()
    chunked = PerceiverFmriModel(make_config(input_chunk_size=3)).eval()
    chunked.load_state_dict(one_chunk.state_dict())
    inputs = make_inputs(2)
    inputs["attention_mask"][1, -3:] = 0
    with torch.no_grad():
        torch.testing.assert_close(
            chunked(**inputs).pooler_output, one_chunk(**inputs).pooler_output, atol=1e-5, rtol=0
        )


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any torch op produces (tracemalloc cannot see torch's allocator)."""

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for tensor in result if isinstance(result, (tuple, list)) else [result]:
            if torch.is_tensor(tensor):
                self.largest = max(self.largest, tensor.numel())
        return result


def test_no_intermediate_grows_faster_than_the_number_of_inputs():
    """Grayordinate-sized V: with 4× the ROIs, the largest intermediate grows ≤ 4× (V×V attention would be 16×)."""

    def largest(num_rois):
        model = PerceiverFmriModel(perceiver_config(num_rois=num_rois, input_chunk_size=4096)).eval()
        values = torch.randn(1, num_rois, 16)
        with torch.no_grad(), LargestTensor() as recorder:
            model(values, repetition_time=0.72)
        return recorder.largest

    small, large = largest(8000), largest(32000)
    assert large <= 4 * small
    assert large < 32000**2 / 100


def test_grayordinates_run():
    model = PerceiverFmriModel(perceiver_config(num_rois=91282, num_hidden_layers=1)).eval()
    with torch.no_grad():
        output = model(torch.randn(1, 91282, 16), repetition_time=0.72)
    assert output.pooler_output.shape == (1, 32)
    assert torch.isfinite(output.pooler_output).all()


def test_processor_for_a_volume_perceiver_is_a_volume_processor():
    assert FmriProcessor.from_model_config(perceiver_volume_config()).input_type == "volume"
    assert FmriProcessor.from_model_config(perceiver_config()).num_rois == NUM_ROIS


def test_volume_perceiver_refuses_roi_input():
    model = PerceiverFmriModel(perceiver_volume_config())
    with pytest.raises(FmriInputError, match="fmri_values: expected a tensor of shape"):
        model(**roi_inputs(1))
