"""Imported SwiFT weights give SwiFT's output: fixtures made once from SwiFT's own code
(`tests/fixtures/swift/README.md`); no reference code and no network here.

What is compared: the output of the reference `SwinTransformer4D.forward`, i.e. the last stage's tokens
`(B, C, h, w, d, t)` before any head (SwiFT's `clf_mlp` / `reg_mlp` / `emb_mlp` pool them afterwards) and with no
final norm (SwiFT never applies its `norm`), against our `last_hidden_state` `(B, h·w·d·t, C)` (row-major over
(h, w, d, t)). Both models take `(B, C, H, W, D, T)`, time last: the stored input goes in unchanged.
"""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from r2tnet_hf import FmriInputError, Swin4DConfig, Swin4DModel
from r2tnet_hf.convert import import_weights, swift
from r2tnet_hf.convert.common import ReferenceCheckpoint, WeightImportError

from ...reference_fixtures import read_reference_fixture

FIXTURES = sorted((Path(__file__).parents[2] / "fixtures" / "swift").glob("*.safetensors"))


def read_fixture(path):
    """`(checkpoint as a SwiFT Lightning .ckpt holds it, input, float32 output, float64 output, constructor kwargs)`;
    the outputs in our layout `(B, tokens, C)`."""
    checkpoint, tensors, metadata = read_reference_fixture(path)

    def tokens(output):  # (B, C, h, w, d, t) → (B, h·w·d·t, C)
        return output.permute(0, 2, 3, 4, 5, 1).reshape(output.shape[0], -1, output.shape[1])

    return (
        checkpoint,
        tensors["input"],
        tokens(tensors["output"]),
        tokens(tensors["output_float64"]),
        json.loads(metadata["constructor_kwargs"]),
    )


def imported_model(checkpoint, **overrides):
    config, state = swift.convert(checkpoint, **overrides)
    model = Swin4DModel(config).eval()
    model.load_state_dict(state, strict=True)
    return model


def test_there_are_two_fixtures():
    assert [p.stem for p in FIXTURES] == ["full_msa_two_stage", "windowed_three_stage_padded"]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_imported_weights_give_the_reference_output(path):
    """float32 against the reference's float32 run: within 1e-5 (measured ~1e-6, on outputs of std ~1)."""
    checkpoint, inputs, expected, _, _ = read_fixture(path)
    model = imported_model(checkpoint)
    with torch.no_grad():
        ours = model(inputs).last_hidden_state  # no repetition_time: SwiFT's positions index frames
    assert ours.shape == expected.shape
    assert expected.std() > 0.5  # the fixture is not trivially small
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_in_float64_the_computation_is_the_same(path):
    """In float64, where rounding cannot hide a different computation, the outputs agree to ~1e-15."""
    checkpoint, inputs, _, expected, _ = read_fixture(path)
    model = imported_model(checkpoint).double()
    with torch.no_grad():
        ours = model(inputs.double()).last_hidden_state
    assert (ours - expected).abs().max() < 1e-10


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_the_config_is_from_swift_of_the_constructor_arguments(path):
    checkpoint, _, _, _, constructor = read_fixture(path)
    config, _ = swift.convert(checkpoint)
    assert config.to_diff_dict() == Swin4DConfig.from_swift(constructor).to_diff_dict()
    assert config.position_embedding == "learned" and config.window_padding == "attended_zeros"
    assert not config.final_layer_norm and not config.patch_norm and config.shifted_window_mask_value == -100.0


def test_checks_that_can_fail():
    """Each SwiFT option changes the output of a fixture: our masked window padding on the padded one, global
    attention over all frames (and shifted windows) on the last stage of the full-MSA one."""
    checkpoint, inputs, expected, _, _ = read_fixture(FIXTURES[1])
    with torch.no_grad():
        masked = imported_model(checkpoint, window_padding="masked")(inputs)
    assert masked.last_hidden_state.shape[1] == 6 and not masked.token_mask[:, 5].any()  # 5 frames, padded to 6
    assert (masked.last_hidden_state[:, :5] - expected).abs().max() > 1e-2
    checkpoint, inputs, expected, _, _ = read_fixture(FIXTURES[0])
    for overrides in (dict(global_attention_time_window=None), dict(global_attention_last_stage=False)):
        with torch.no_grad():
            other = imported_model(checkpoint, **overrides)(inputs).last_hidden_state
        assert (other - expected).abs().max() > 1e-2, overrides


def test_a_bare_state_dict_and_the_lightning_heads():
    """A bare `SwinTransformer4D.state_dict()` converts the same; the Lightning heads are dropped by name."""
    checkpoint, inputs, expected, _, _ = read_fixture(FIXTURES[0])
    bare = ReferenceCheckpoint(
        checkpoint.path,
        {key.removeprefix("model."): value for key, value in checkpoint.state_dict.items()},
        checkpoint.hyper_parameters,
    )
    heads = {"output_head.head.weight": torch.zeros(1, 36), "output_head.head.bias": torch.zeros(1)}
    with_heads = ReferenceCheckpoint(checkpoint.path, {**checkpoint.state_dict, **heads}, checkpoint.hyper_parameters)
    for variant in (bare, with_heads):
        with torch.no_grad():
            torch.testing.assert_close(imported_model(variant)(inputs).last_hidden_state, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("extra", "listed"),
    [
        ({"model.layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(3, 2)}, "relative_position_bias"),
        ({"model.head.weight": torch.zeros(1, 36)}, "head.weight"),
        ({"output_head.unknown.weight": torch.zeros(1)}, "output_head.unknown.weight"),  # not a known head tensor
        ({"model.layers.0.blocks.2.attn.qkv.bias": torch.zeros(36)}, "layers.0.blocks.2.attn.qkv.bias[query]"),
    ],
)
def test_an_unknown_tensor_is_refused_by_name(extra, listed):
    checkpoint, _, _, _, _ = read_fixture(FIXTURES[0])
    state = {**checkpoint.state_dict, **extra}
    with pytest.raises(WeightImportError, match="unmapped") as error:
        swift.convert(ReferenceCheckpoint(checkpoint.path, state, checkpoint.hyper_parameters))
    assert listed in str(error.value)


@pytest.mark.parametrize(
    ("removed", "listed"),
    [
        ("model.layers.1.blocks.1.mlp.linear2.bias", "stages.1.blocks.1.mlp.fc2.bias"),
        ("model.pos_embeds.1.time_embed", "stages.1.position_embedding.temporal"),
        ("model.layers.0.blocks.0.attn.qkv.weight", "stages.0.blocks.0.attention.key_value.weight"),
    ],
)
def test_a_missing_tensor_is_refused_by_name(removed, listed):
    checkpoint, _, _, _, _ = read_fixture(FIXTURES[0])
    state = {key: value for key, value in checkpoint.state_dict.items() if key != removed}
    with pytest.raises(WeightImportError, match="missing") as error:
        swift.convert(ReferenceCheckpoint(checkpoint.path, state, checkpoint.hyper_parameters))
    assert listed in str(error.value)


def test_what_shapes_cannot_tell_comes_from_hyperparameters_or_overrides():
    checkpoint, inputs, expected, _, constructor = read_fixture(FIXTURES[1])
    bare = ReferenceCheckpoint(checkpoint.path, checkpoint.state_dict, {})
    with pytest.raises(WeightImportError) as error:
        swift.convert(bare)
    for name in ("patch_size", "num_heads", "window_size", "first_window_size", "last_layer_full_MSA"):
        assert name in str(error.value)
    overrides = dict(
        patch_size=constructor["patch_size"],
        num_heads=constructor["num_heads"],
        window_size=constructor["window_size"],
        first_window_size=constructor["first_window_size"],
        global_attention_last_stage=constructor["last_layer_full_MSA"],
    )
    with torch.no_grad():
        ours = imported_model(bare, **overrides)(inputs).last_hidden_state
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    inconsistent = {**checkpoint.hyper_parameters, "embed_dim": 24}
    with pytest.raises(WeightImportError, match="embed_dim"):
        swift.convert(ReferenceCheckpoint(checkpoint.path, checkpoint.state_dict, inconsistent))


def test_learned_positions_need_the_configured_size():
    checkpoint, inputs, _, _, _ = read_fixture(FIXTURES[1])
    model = imported_model(checkpoint)  # image 8³, a time table of 6 frames
    with pytest.raises(FmriInputError, match="image_size"):
        model(inputs[:, :, :6])
    with pytest.raises(FmriInputError, match="num_frames"):
        model(torch.cat([inputs, inputs], dim=-1))


def test_import_weights_round_trip_through_auto_model(tmp_path):
    """`r2tnet import-weights --from swift` on a Lightning checkpoint: the folder loads with AutoModel."""
    checkpoint, inputs, expected, _, _ = read_fixture(FIXTURES[0])
    path = tmp_path / "swift.ckpt"
    heads = {"output_head.head.weight": torch.zeros(1, 36), "output_head.head.bias": torch.zeros(1)}
    torch.save(
        {"state_dict": {**checkpoint.state_dict, **heads}, "hyper_parameters": checkpoint.hyper_parameters}, path
    )
    out = import_weights("swift", path, tmp_path / "imported")
    assert "github.com/Transconnectome/SwiFT" in (out / "README.md").read_text()
    model = AutoModel.from_pretrained(out).eval()
    assert type(model) is Swin4DModel
    with torch.no_grad():
        torch.testing.assert_close(model(inputs).last_hidden_state, expected, atol=1e-5, rtol=0)
