"""Imported reference weights give the reference's output: fixtures made once from MnemoDyn_Draft's own code
(`tests/fixtures/mnemodyn/README.md`); no reference code and no network here."""

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from r2tnet_hf import MnemoDynModel
from r2tnet_hf.convert import mnemodyn
from r2tnet_hf.convert.common import ReferenceCheckpoint, WeightImportError

from ...reference_fixtures import read_reference_fixture

FIXTURES = sorted((Path(__file__).parents[2] / "fixtures" / "mnemodyn").glob("*.safetensors"))


def read_fixture(path):
    checkpoint, tensors, _ = read_reference_fixture(path)
    return checkpoint, tensors["input"], tensors["output_float64"]


def reference_float32_output(path):
    with safe_open(path, framework="pt") as handle:
        return handle.get_tensor("output")


def test_there_are_two_fixtures():
    assert [p.stem for p in FIXTURES] == ["main_plain_linear", "orion_residual_hermite"]


def imported_model(path, **overrides):
    checkpoint, window, expected = read_fixture(path)
    config, state = mnemodyn.convert(checkpoint, **overrides)
    model = MnemoDynModel(config).eval()
    model.load_state_dict(state, strict=True)
    return model, window, expected


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_imported_weights_give_the_reference_output(path):
    """In float64, where rounding cannot hide a different computation, the outputs agree to 1e-5 (in fact ~1e-12)."""
    model, window, expected = imported_model(path)
    model = model.double()
    with torch.no_grad():
        # the reference takes (batch, time, V); ours takes time last. TR is unused on the reference's time axis.
        ours = model(window.transpose(1, 2), repetition_time=1.0).last_hidden_state
    assert ours.shape == expected.shape
    assert expected.abs().max() > 0.1  # the fixture is not trivially zero
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    assert (ours - expected).abs().max() < 1e-9


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_in_float32_we_are_as_close_as_the_reference_is_to_itself(path):
    """In float32 neither implementation is within 1e-5 of the exact (float64) output: the reference's own float32
    output is 2e-4 (main) and 2e-3 (orion, with residuals) away from its float64 one, on outputs of std 2-3. Ours (other
    summation orders) is required to be within twice that rounding of both the reference's float32 output and the
    exact one."""
    model, window, exact = imported_model(path)
    reference32 = reference_float32_output(path).double()
    rounding = (reference32 - exact).abs().max()
    with torch.no_grad():
        ours = model(window.float().transpose(1, 2), repetition_time=1.0).last_hidden_state.double()
    assert (ours - reference32).abs().max() <= 2 * rounding
    assert (ours - exact).abs().max() <= 2 * rounding


@pytest.mark.parametrize("path", FIXTURES[:1], ids=lambda p: p.stem)
def test_the_same_weights_on_our_time_axis_differ(path):
    """A check that can fail: with time in seconds (our default) the output is not the reference's."""
    model, window, expected = imported_model(path, time_axis="seconds")
    with torch.no_grad():
        ours = model.double()(window.transpose(1, 2), repetition_time=0.72).last_hidden_state
    assert (ours - expected).abs().max() > 1e-3


def test_unmapped_and_missing_tensors_are_listed():
    checkpoint, _, _ = read_fixture(FIXTURES[0])
    extra = dict(checkpoint.state_dict, **{"model.ema.weight": torch.zeros(2)})
    with pytest.raises(WeightImportError, match=r"1 unmapped \(ema\.weight\)"):
        mnemodyn.convert(ReferenceCheckpoint(checkpoint.path, extra, checkpoint.hyper_parameters))
    fewer = {k: v for k, v in checkpoint.state_dict.items() if k != "model.layers.1.dense_layers.0.bias"}
    with pytest.raises(WeightImportError, match=r"1 missing \(layers\.1\.dense_layers\.0\.bias\)"):
        mnemodyn.convert(ReferenceCheckpoint(checkpoint.path, fewer, checkpoint.hyper_parameters))


def test_what_the_shapes_cannot_tell_must_be_given():
    checkpoint, _, _ = read_fixture(FIXTURES[0])
    bare = ReferenceCheckpoint(checkpoint.path, checkpoint.state_dict, {})
    with pytest.raises(WeightImportError, match="original_length and use_residual"):
        mnemodyn.convert(bare)
    config, _ = mnemodyn.convert(bare, num_frames=32, use_residual=False)
    assert config.num_frames == 32 and config.time_axis == "unit_interval"


def test_an_inconsistent_architecture_is_a_one_line_import_error():
    checkpoint, _, _ = read_fixture(FIXTURES[0])
    with pytest.raises(WeightImportError, match=r"a consistent MnemoDyn architecture.*wavelet_kernel_size must be odd"):
        mnemodyn.convert(checkpoint, wavelet_kernel_size=4)
