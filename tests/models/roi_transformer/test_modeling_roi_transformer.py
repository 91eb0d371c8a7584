import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

from r2tnet_hf import FmriInputError, RoiTransformerConfig, RoiTransformerModel
from r2tnet_hf.models.common import sinusoidal_time_embedding
from tests.model_tester import ModelTesterMixin
from tests.models.tiny_backbones import NUM_ROIS
from tests.models.tiny_backbones import ROI_FRAMES as NUM_FRAMES
from tests.models.tiny_backbones import roi_transformer_config as tiny_config


def roi_inputs(batch, frames=NUM_FRAMES, rois=NUM_ROIS):
    return {
        "fmri_values": torch.randn(batch, rois, frames),
        "attention_mask": torch.ones(batch, frames, dtype=torch.long),
        "repetition_time": torch.full((batch,), 0.72),
    }


class TestRoiTransformerModel(ModelTesterMixin):
    model_classes = (RoiTransformerModel,)

    def get_config(self):
        return tiny_config()

    def get_inputs(self, model_class, batch_size):
        return roi_inputs(batch_size)

    def output_tensor(self, output):
        return output.last_hidden_state

    def check_output_shapes(self, model, output, inputs):
        tokens = NUM_FRAMES // model.config.patch_size
        assert output.last_hidden_state.shape == (self.batch_size, tokens, 32)
        assert output.pooler_output.shape == (self.batch_size, 32)
        assert output.token_mask.shape == (self.batch_size, tokens)

    def expected_attention_shapes(self, model, inputs):
        tokens = NUM_FRAMES // model.config.patch_size
        return [(self.batch_size, 4, tokens, tokens)] * 2


class TestFactorisedRoiTransformer(TestRoiTransformerModel):
    """The same suite with the factorised (spatial basis) input projection."""

    def get_config(self):
        return tiny_config(spatial_rank=6)


@pytest.mark.parametrize("pooling", ["mean", "mean_std"])
def test_padding_does_not_change_real_frames(pooling):
    """Padding (with garbage in the padded frames) leaves the real tokens and the pooled output unchanged."""
    model = RoiTransformerModel(tiny_config(pooling=pooling)).eval()
    real = torch.randn(2, NUM_ROIS, 37)  # 37 is not a multiple of patch_size=4: the last token is partial
    tr = torch.tensor([0.72, 2.0])
    with torch.no_grad():
        alone = model(real, repetition_time=tr)
        padded_values = torch.cat([real, 100 * torch.randn(2, NUM_ROIS, 19)], dim=-1)
        mask = torch.zeros(2, 56, dtype=torch.long)
        mask[:, :37] = 1
        padded = model(padded_values, attention_mask=mask, repetition_time=tr)
    real_tokens = alone.last_hidden_state.shape[1]
    torch.testing.assert_close(padded.last_hidden_state[:, :real_tokens], alone.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded.pooler_output, alone.pooler_output, atol=1e-5, rtol=0)
    assert padded.token_mask[:, real_tokens:].sum() == 0


def test_token_times_are_in_seconds():
    """The same frames at another TR give another output; the embedding is a function of seconds only."""
    model = RoiTransformerModel(tiny_config()).eval()
    values = torch.randn(1, NUM_ROIS, NUM_FRAMES)
    with torch.no_grad():
        fast = model(values, repetition_time=0.72).pooler_output
        again = model(values, repetition_time=torch.tensor([0.72])).pooler_output
        slow = model(values, repetition_time=2.0).pooler_output
    torch.testing.assert_close(fast, again)
    assert (fast - slow).abs().max() > 1e-4
    # Token k of a TR-1 s scan with patch 4 is centred at 1.5 + 4k seconds; at TR 0.5 s with patch 8 it is
    # centred at 3.5·0.5 + 4k = 1.75 + 4k seconds: the embedding only sees these seconds.
    seconds = torch.tensor([[1.5, 5.5, 9.5]])
    emb = sinusoidal_time_embedding(seconds, 32, 10000.0)
    emb_again = sinusoidal_time_embedding(seconds.clone(), 32, 10000.0)
    torch.testing.assert_close(emb, emb_again)
    assert emb.shape == (1, 3, 32)
    torch.testing.assert_close(emb[0, 0, :16] ** 2 + emb[0, 0, 16:] ** 2, torch.ones(16))


def test_sdpa_matches_eager():
    config = tiny_config()
    sdpa = RoiTransformerModel(config).eval()
    eager_model = RoiTransformerModel(tiny_config()).eval()
    eager_model.load_state_dict(sdpa.state_dict())
    eager_model.config._attn_implementation = "eager"
    assert sdpa.config._attn_implementation == "sdpa"
    inputs = roi_inputs(2)
    inputs["attention_mask"][1, 30:] = 0
    with torch.no_grad():
        torch.testing.assert_close(
            eager_model(**inputs).last_hidden_state, sdpa(**inputs).last_hidden_state, atol=1e-5, rtol=0
        )
        probs = eager_model(**inputs, output_attentions=True).attentions
    assert len(probs) == 2 and probs[0].shape == (2, 4, 10, 10)
    # masked keys get no attention
    assert probs[0][1, :, :, 8:].abs().max() == 0


def test_gradient_checkpointing_gives_the_same_gradients():
    model = RoiTransformerModel(tiny_config()).train()
    inputs = roi_inputs(2)
    model(**inputs).pooler_output.square().sum().backward()
    plain = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.layers)
    model(**inputs).pooler_output.square().sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[name], atol=1e-6, rtol=1e-5)


def test_grayordinate_input_stage_is_small_and_runs():
    """V = 91282 with the factorised projection: < 5M input-stage parameters, forward at T = 64 on CPU."""
    config = RoiTransformerConfig(
        num_rois=91282,
        spatial_rank=32,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=128,
    )
    model = RoiTransformerModel(config).eval()
    input_stage = (
        sum(p.numel() for p in model.embeddings.projection.parameters()) + model.embeddings.spatial_basis.numel()
    )
    assert input_stage == config.num_input_stage_parameters
    assert input_stage < 5_000_000
    with torch.no_grad():
        output = model(torch.randn(1, 91282, 64), repetition_time=0.72)
    assert output.pooler_output.shape == (1, 64)
    assert torch.isfinite(output.pooler_output).all()


def test_dense_grayordinate_projection_is_refused_with_a_hint():
    with pytest.raises(StrictDataclassClassValidationError, match="set spatial_rank"):
        RoiTransformerConfig(num_rois=91282)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"repetition_time": None}, "repetition_time: expected the TR in seconds"),
        ({"repetition_time": torch.tensor([0.72, -1.0, 0.72])}, "finite positive seconds"),
        ({"attention_mask": torch.ones(3, 7)}, "attention_mask: expected shape"),
        ({"attention_mask": torch.zeros(3, NUM_FRAMES)}, "at least one real frame"),
        ({"fmri_values": torch.randn(3, NUM_FRAMES, NUM_ROIS)}, "input has 40 ROIs but the model expects 16"),
    ],
)
def test_bad_inputs_raise_fmri_input_error(inputs, message):
    model = RoiTransformerModel(tiny_config())
    arguments = roi_inputs(3)
    arguments.update(inputs)
    with pytest.raises(FmriInputError, match=message):
        model(**arguments)


def test_config_validation():
    with pytest.raises(StrictDataclassClassValidationError, match="multiple of num_attention_heads"):
        tiny_config(hidden_size=30)


def test_statistics_pooling_sees_the_spread_of_the_input():
    """`mean_std` pooling: the pooled feature depends on the scan's amplitude, `pool_projection` gets gradients, and
    an unknown pooling is refused."""
    model = RoiTransformerModel(tiny_config(pooling="mean_std")).eval()
    values = torch.randn(1, NUM_ROIS, 40)
    with torch.no_grad():
        quiet, loud = model(values, repetition_time=1.0), model(3 * values, repetition_time=1.0)
    assert quiet.pooler_output.shape == (1, 32)
    assert not torch.allclose(quiet.pooler_output, loud.pooler_output, atol=1e-3)
    model.train()
    model(values, repetition_time=1.0).pooler_output.sum().backward()
    assert model.pool_projection.weight.grad.abs().sum() > 0
    with pytest.raises(Exception, match="pooling must be 'mean' or 'mean_std'"):
        tiny_config(pooling="max")


@pytest.mark.parametrize("spatial_rank", [None, 3], ids=["dense", "spatial_basis"])
def test_masking_after_the_spatial_projection_equals_masking_the_input(spatial_rank):
    """The embedding zeroes masked frames in its patches (after the spatial basis, a bias-free map of each frame),
    not in a copy of the input: the same tokens and gradients as masking the input first, with masked frames
    holding large values and a length that needs padding to the patch."""
    config = tiny_config(spatial_rank=spatial_rank)
    model = RoiTransformerModel(config).train()
    embeddings, patch = model.embeddings, config.patch_size
    frames = 3 * patch + 2  # padded to the patch
    values = torch.randn(2, NUM_ROIS, frames, generator=torch.Generator().manual_seed(0))
    frame_mask = torch.ones(2, frames, dtype=torch.bool)
    frame_mask[1, patch + 1 :] = False  # a patch half masked, and the rest
    values[1, :, patch + 1 :] += 100.0
    tr = torch.tensor([0.72, 2.0])

    def masked_first(values):  # the previous rule: a masked copy of the input, then the projections
        masked = torch.nn.functional.pad(values * frame_mask.unsqueeze(1), (0, (-frames) % patch))
        if embeddings.spatial_basis is not None:
            masked = torch.einsum("bvt,vr->brt", masked, embeddings.spatial_basis)
        patches = masked.unflatten(-1, (-1, patch)).transpose(1, 2).flatten(2)
        return embeddings.projection(patches)

    expected_values = values.clone().requires_grad_()
    expected = masked_first(expected_values)
    found_values = values.clone().requires_grad_()
    _, token_mask, content = embeddings(found_values, frame_mask, tr)
    torch.testing.assert_close(content, expected, atol=1e-5, rtol=1e-6)
    assert token_mask.tolist() == [[True] * 4, [True, True, False, False]]
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1))
    (expected * weights).sum().backward()
    (content * weights).sum().backward()
    torch.testing.assert_close(found_values.grad, expected_values.grad, atol=1e-6, rtol=1e-6)
    assert found_values.grad[1, :, patch + 1 :].abs().max() == 0
