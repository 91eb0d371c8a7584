import os

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from nibabel.testing import data_path

from r2tnet_hf import FmriProcessor, Swin4DConfig, Swin4DModel
from r2tnet_hf.data.io import read_series
from r2tnet_hf.models.common import FmriAttention
from r2tnet_hf.models.swin4d.modeling_swin4d import shifted_windows
from tests.model_tester import ModelTesterMixin
from tests.models.tiny_backbones import FRAMES, VOLUME, swin4d_config, volume_inputs


class TestSwin4DModel(ModelTesterMixin):
    model_classes = (Swin4DModel,)

    def get_config(self):
        return swin4d_config()

    def get_inputs(self, model_class, batch_size):
        return volume_inputs(batch_size)

    def output_tensor(self, output):
        return output.last_hidden_state

    def check_output_shapes(self, model, output, inputs):
        # 8³ voxels / patch 2 = 4³ tokens, merged once to 2³; time is never merged.
        assert output.last_hidden_state.shape == (self.batch_size, 2 * 2 * 2 * FRAMES, 32)
        assert output.pooler_output.shape == (self.batch_size, 32)
        assert output.token_mask.all()

    def expected_attention_shapes(self, model, inputs):
        # stage 0: 4×4×4×6 tokens in 24 windows of 2×2×2×2; stage 1 (global): all 2×2×2×6 tokens in one window
        return [(self.batch_size * 24, 2, 16, 16)] * 2 + [(self.batch_size, 4, 48, 48)] * 2


def swift_config(**overrides):
    """A tiny SwiFT computation (`Swin4DConfig.from_swift`): learned positions, last stage full over space in windows
    of 4 frames, time windows of 4 over 6 frames (so window padding is attended)."""
    arguments = dict(
        img_size=[*VOLUME, FRAMES], in_chans=1, embed_dim=8, window_size=[2, 2, 2, 4], first_window_size=[2, 2, 2, 4],
        patch_size=[2, 2, 2, 1], depths=[2, 2], num_heads=[2, 2], last_layer_full_MSA=True,
    )  # fmt: skip
    return Swin4DConfig.from_swift(arguments, **overrides)


class TestSwin4DModelSwiFTOptions(ModelTesterMixin):
    """The per-model suite under SwiFT's computation (the parity itself: `test_swift_parity.py`)."""

    model_classes = (Swin4DModel,)

    def get_config(self):
        return swift_config()

    def get_inputs(self, model_class, batch_size):
        return volume_inputs(batch_size)

    def output_tensor(self, output):
        return output.last_hidden_state

    def check_output_shapes(self, model, output, inputs):
        assert output.last_hidden_state.shape == (self.batch_size, 2 * 2 * 2 * FRAMES, 16)  # no time padding left
        assert output.token_mask.all()

    def expected_attention_shapes(self, model, inputs):
        # SwiFT pads each block's windows: stage 0, 4×4×4×6 tokens padded to 4×4×4×8, 16 windows of 2×2×2×4;
        # stage 1, 2×2×2×6 padded to 2×2×2×8, 2 windows of all space × 4 frames
        return [(self.batch_size * 16, 2, 32, 32)] * 2 + [(self.batch_size * 2, 2, 32, 32)] * 2

    def test_batching_equivalence(self):
        """SwiFT attends to window padding (reproduced for parity, see `modeling_swin4d`): a scan alone equals its
        row in a batch where padding to the batch's length leaves its windows as they were (1 frame beside 6), and
        not where it changes them (4 frames beside 6: windows of 4 frames over a grid padded to 8)."""
        unchanged = self.batching_differences(Swin4DModel, [1, FRAMES, FRAMES])
        assert max(unchanged) <= 1e-5, unchanged
        changed = self.batching_differences(Swin4DModel, [4, FRAMES, FRAMES])
        assert changed[0] > 1e-6 and max(changed[1:]) <= 1e-5, changed


def test_swift_options():
    config = swift_config()
    assert config.position_embedding == "learned" and config.window_padding == "attended_zeros"
    assert config.global_attention_last_stage and config.global_attention_time_window == 4
    assert not config.patch_norm and not config.final_layer_norm and config.shifted_window_mask_value == -100.0
    model = Swin4DModel(config)
    assert model.stages[0].windows_for((4, 4, 4, 6)) == ((2, 2, 2, 4), (1, 1, 1, 2))
    assert model.stages[1].windows_for((2, 2, 2, 6)) == ((2, 2, 2, 4), (0, 0, 0, 0))
    assert model.stages[0].position_embedding.spatial.shape == (4, 4, 4, 8)
    assert model.stages[1].position_embedding.temporal.shape == (FRAMES, 16)
    assert not any(name.startswith(("norm.", "embeddings.norm.")) for name in model.state_dict())
    with pytest.raises(ValueError, match="not known"):
        Swin4DConfig.from_swift({**config_arguments(), "relative_position_bias": True})
    with pytest.raises(StrictDataclassClassValidationError, match="window_padding"):
        swift_config(window_padding="zeros")


def config_arguments():
    return dict(
        img_size=[8, 8, 8, 4], in_chans=1, embed_dim=8, window_size=[2, 2, 2, 2], first_window_size=[2, 2, 2, 2],
        patch_size=[2, 2, 2, 1], depths=[2, 2], num_heads=[2, 2],
    )  # fmt: skip


def attention_pairs(grid, window, shift):
    """`(tokens, tokens)` boolean: may token i attend to token j, built from the model's window construction."""
    index, same_region = shifted_windows(grid, window, shift)
    tokens = index.numel()
    allowed = torch.zeros(tokens, tokens, dtype=torch.bool)
    within = torch.ones(index.shape[1], index.shape[1], dtype=torch.bool)
    for number, members in enumerate(index):
        block = within if same_region is None else same_region[number]
        allowed[members[:, None], members[None, :]] = block
    return allowed


def brute_force_pairs(grid, window, shift):
    """From original coordinates: i and j share a window of the grid whose borders are moved by the shift."""
    coordinates = torch.stack(torch.meshgrid(*(torch.arange(g) for g in grid), indexing="ij"), dim=-1).reshape(-1, 4)
    cell = torch.div(coordinates - torch.tensor(shift), torch.tensor(window), rounding_mode="floor")
    return (cell[:, None, :] == cell[None, :, :]).all(dim=-1), coordinates


@pytest.mark.parametrize(
    ("grid", "window", "shift"),
    [
        ((4, 4, 4, 4), (2, 2, 2, 2), (1, 1, 1, 1)),
        ((4, 6, 2, 4), (2, 3, 2, 2), (1, 1, 0, 1)),
        ((4, 4, 4, 4), (2, 2, 2, 2), (0, 0, 0, 0)),
    ],
)
def test_shifted_window_mask_matches_brute_force(grid, window, shift):
    allowed = attention_pairs(grid, window, shift)
    expected, coordinates = brute_force_pairs(grid, window, shift)
    assert torch.equal(allowed, expected)
    # Never across a window border or the cyclic wrap: allowed pairs are less than a window apart on every axis.
    i, j = torch.nonzero(allowed, as_tuple=True)
    assert ((coordinates[i] - coordinates[j]).abs() < torch.tensor(window)).all()
    # The rolled windows really are shifted: the grid is a permutation and some window crosses an unshifted border.
    index, _ = shifted_windows(grid, window, shift)
    assert torch.equal(index.flatten().sort().values, torch.arange(index.numel()))
    if any(shift):
        unshifted, _ = brute_force_pairs(grid, window, (0, 0, 0, 0))
        assert (allowed & ~unshifted).any()


def test_shifted_block_only_mixes_tokens_within_a_shifted_window():
    """Through a real shifted block: perturbing one token changes exactly the tokens of its shifted window."""
    model = Swin4DModel(swin4d_config()).eval()
    stage = model.stages[0]
    grid, window, shift = (4, 4, 4, 4), (2, 2, 2, 2), (1, 1, 1, 1)
    index, same_region = shifted_windows(grid, window, shift)
    hidden = torch.randn(1, 256, 16)
    keys = torch.ones(1, *index.shape, dtype=torch.bool)
    mask = (keys.unsqueeze(-2) & same_region).unsqueeze(2)
    block = stage.blocks[1]

    def run(x):
        return block(x[:, index], mask).flatten(1, 2)[:, torch.argsort(index.flatten())]

    with torch.no_grad():
        base = run(hidden)
        perturbed = hidden.clone()
        token = 85  # coordinate (1, 1, 1, 1): its shifted window is [1, 3)⁴, 16 tokens
        perturbed[0, token] += torch.randn(16)  # not a constant: LayerNorm would remove it
        changed = (run(perturbed) - base).abs().amax(dim=-1)[0] > 1e-6
    expected, _ = brute_force_pairs(grid, window, shift)
    assert expected[token].sum() == 16
    assert torch.equal(changed, expected[token])


@pytest.mark.parametrize("mask_kind", ["none", "bool per window", "additive per batch and window"])
def test_windowed_attention_flattened_to_4d_equals_attention_window_by_window(mask_kind):
    """`FmriAttention` on `(batch, windows, tokens, features)` flattens (batch, windows) into SDPA's one batch axis,
    and the mask with it: the same as attending within each window alone, with its own mask."""
    torch.manual_seed(0)
    attention = FmriAttention(16, 2).eval()
    batch, windows, tokens = 2, 3, 5
    hidden = torch.randn(batch, windows, tokens, 16)
    if mask_kind == "none":
        mask = None
    elif mask_kind == "bool per window":  # (windows, 1, tokens, tokens), shared by the batch
        mask = torch.rand(windows, 1, tokens, tokens) > 0.5
        mask |= torch.eye(tokens, dtype=torch.bool)
    else:  # additive, (batch, windows, 1, tokens, tokens)
        mask = torch.randn(batch, windows, 1, tokens, tokens)
        mask[0, 1, :, :, 3:] = -float("inf")
    with torch.no_grad():
        flat = attention(hidden, mask)
        for b in range(batch):
            for w in range(windows):
                own = None if mask is None else (mask[w] if mask.ndim == 4 else mask[b, w])
                alone = attention(hidden[b, w][None], None if own is None else own[None])[0]
                torch.testing.assert_close(flat[b, w], alone, atol=1e-6, rtol=1e-6)


def test_stage_attention_mask_is_additive_and_none_where_nothing_is_masked():
    """The mask of a window layout: `None` for plain windows with every key real; for shifted windows 0 within a
    region and -inf (hard) or the SwiFT value (soft) across; masked keys -inf except for a token to itself."""
    grid, window, shift = (4, 4, 2, 2), (2, 2, 2, 2), (1, 1, 0, 0)
    index, same_region = shifted_windows(grid, window, shift)
    plain_index, _ = shifted_windows(grid, window, (0, 0, 0, 0))
    hard = Swin4DModel(swin4d_config()).stages[0]
    soft = Swin4DModel(swift_config()).stages[0]
    assert hard.attention_mask(None, None, plain_index, torch.float32) is None
    mask = hard.attention_mask(None, same_region, index, torch.float32)
    assert mask.shape == (*same_region.shape[:1], 1, *same_region.shape[1:])
    assert torch.equal(mask[:, 0] == 0, same_region) and torch.isinf(mask[:, 0][~same_region]).all()
    soft_mask = soft.attention_mask(None, same_region, index, torch.float32)[:, 0]
    assert torch.equal(soft_mask[~same_region], torch.full_like(soft_mask[~same_region], -100.0))
    key_mask = torch.ones(2, index.numel(), dtype=torch.bool)
    key_mask[1, index[0, 1]] = False  # the second token of the first window, in the second scan
    masked = hard.attention_mask(key_mask, same_region, index, torch.float32)[:, :, 0]
    assert masked.shape == (2, *same_region.shape)
    assert torch.equal(masked[0], mask[:, 0])
    column = masked[1, 0, :, 1]
    assert column[1] == 0 and torch.isinf(column[torch.arange(len(column)) != 1]).all()
    soft_masked = soft.attention_mask(key_mask, same_region, index, torch.float32)[1, 0, 0]
    assert soft_masked[1, 1] == 0 and torch.isinf(soft_masked[0, 1])


def test_appended_masked_frames_leave_real_tokens_unchanged():
    model = Swin4DModel(swin4d_config()).eval()
    real = volume_inputs(2, frames=4)
    padded = volume_inputs(2, frames=7)  # 3 frames of garbage appended: the time grid is padded differently
    padded["fmri_values"][..., :4] = real["fmri_values"]
    padded["attention_mask"][:, 4:] = 0
    with torch.no_grad():
        alone = model(**real)
        with_padding = model(**padded)
    grid_alone = alone.last_hidden_state.view(2, 2, 2, 2, 4, 32)
    grid_padded = with_padding.last_hidden_state.view(2, 2, 2, 2, -1, 32)
    torch.testing.assert_close(grid_padded[..., :4, :], grid_alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(with_padding.pooler_output, alone.pooler_output, atol=1e-5, rtol=0)
    assert not with_padding.token_mask.view(2, 2, 2, 2, -1)[..., 4:].any()


def test_sizes_that_do_not_divide_the_strides_are_padded_and_masked():
    """13×11×12 voxels, 5 frames with patch 2 and window 2 (time window 2 → 6 frames after padding)."""
    model = Swin4DModel(swin4d_config()).eval()
    inputs = volume_inputs(2, frames=5, size=(13, 11, 12))
    with torch.no_grad():
        output = model(**inputs, output_hidden_states=True)
    # Stage 0: tokens 7×6×6×5, padded to 8×6×6×6; the merged grid is 4×3×3×6, 5 real frames each.
    assert output.hidden_states[0].shape == (2, 8 * 6 * 6 * 6, 16)
    assert output.last_hidden_state.shape == (2, 4 * 3 * 3 * 6, 32)
    mask = output.token_mask.view(2, 4, 3, 3, 6)
    assert mask[..., :5].all() and not mask[..., 5].any()
    assert torch.isfinite(output.last_hidden_state).all()
    # The padding is not in the pooled features: a second padding rule (pad by hand, mask the extra frame) agrees.
    by_hand = volume_inputs(2, frames=6, size=(13, 11, 12))
    by_hand["fmri_values"][..., :5] = inputs["fmri_values"]
    by_hand["attention_mask"][:, 5] = 0
    with torch.no_grad():
        torch.testing.assert_close(model(**by_hand).pooler_output, output.pooler_output, atol=1e-5, rtol=0)


def test_default_config_is_swift():
    config = Swin4DConfig()
    assert config.patch_size == [6, 6, 6, 1] and config.window_size == [4, 4, 4, 4]
    assert config.depths == [2, 2, 6, 2] and config.num_heads == [3, 6, 12, 24] and config.embed_dim == 36
    assert config.hidden_size == 288 and config.image_size == [96, 96, 96] and config.num_frames == 20
    model = Swin4DModel(config)
    assert model.stages[-1].is_global and model.stages[0].windows_for((16, 16, 16, 20)) == (
        (4, 4, 4, 4),
        (2, 2, 2, 2),
    )


def test_nibabel_example4d_through_the_processor_into_swin4d():
    path = os.path.join(data_path, "example4d.nii.gz")
    series = read_series(path)
    assert series.data.shape == (1, 128, 96, 24, 2)
    processor = FmriProcessor(input_type="volume", volume_shape=[1, 128, 96, 24], min_length=1)
    batch = processor([path], repetition_time=2.0, return_tensors="pt")  # the header's "2000 sec" is refused
    config = swin4d_config(image_size=[128, 96, 24], num_frames=2, patch_size=[16, 16, 4, 1])
    model = Swin4DModel(config).eval()
    with torch.no_grad():
        output = model(**batch)
    assert output.pooler_output.shape == (1, 32)
    assert torch.isfinite(output.pooler_output).all()
    assert FmriProcessor.from_model_config(config).input_type == "volume"


def test_transformers_standard_names_are_derived_or_refused_in_one_line():
    # as transformers' SwinConfig: set per stage; hidden_size and num_hidden_layers follow, num_attention_heads is num_heads
    config = Swin4DConfig(embed_dim=12, depths=[2, 2], num_attention_heads=[3, 6], hidden_size=24, num_hidden_layers=2)
    assert config.num_heads == [3, 6] and config.num_attention_heads == [3, 6]
    assert config.hidden_size == 24 and config.num_hidden_layers == 2
    refusals = [
        (dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3), "num_attention_heads (Swin4DConfig.num_heads)"
         " expects a list of ints (attention heads per stage), e.g. num_heads=[3, 6, 12, 24]; got 3 (int)"),
        (dict(num_heads=3), "Swin4DConfig.num_heads expects a list of ints"),
        (dict(depths=[2, "2"]), "Swin4DConfig.depths expects a list of ints (blocks per stage), e.g. depths=[2, 2, 6, 2]"),
        (dict(depths=[2, 2.0]), "got [2, 2.0] (list)"),
        (dict(window_size=4), "Swin4DConfig.window_size expects a list of ints (tokens per axis (H, W, D, T))"),
        (dict(image_size=None), "Swin4DConfig.image_size expects a list of ints"),
        (dict(hidden_size=24), "hidden_size is derived, embed_dim * channel_multiplier ** (len(depths) - 1) = 288, "
         "got 24: set embed_dim instead (embed_dim=3 gives it with 4 stages)"),
        (dict(num_hidden_layers=2), "num_hidden_layers is the number of stages, len(depths) = 4, got 2: set depths and "
         "num_heads, one int per stage, e.g. depths=[2, 2], num_heads=[3, 6]"),
    ]  # fmt: skip
    for arguments, message in refusals:
        with pytest.raises(ValueError) as error:
            Swin4DConfig(**arguments)
        assert type(error.value) is ValueError and message in str(error.value) and "\n" not in str(error.value)


def test_a_saved_config_recomputes_what_is_derived(tmp_path):
    config = Swin4DConfig(embed_dim=12, depths=[2, 2], num_heads=[3, 6])
    config.save_pretrained(tmp_path)
    assert Swin4DConfig.from_pretrained(tmp_path).hidden_size == 24
    grown = Swin4DConfig.from_pretrained(tmp_path, depths=[2, 2, 2], num_heads=[3, 6, 12])  # set after __init__
    grown.save_pretrained(tmp_path)  # its stale hidden_size 24 is written beside depths of 3 stages
    reloaded = Swin4DConfig.from_pretrained(tmp_path)
    assert reloaded.hidden_size == 48 and reloaded.num_hidden_layers == 3
