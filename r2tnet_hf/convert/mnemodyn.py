"""MnemoDyn reference checkpoints (`MnemoDyn_Draft`'s `StackedORionModel`, in Lightning `.ckpt` or bare) → `MnemoDynModel`.

Tensor names: `[model.]layers.{i}.{input_projection,bottleneck,feature_expansion,output_projection}.{weight,bias}`,
`layers.{i}.dense_layers.{j}.{weight,bias}`, `layers.{i}.conv_layers.{l}.0.{weight,bias}` (→ `level_convs.{l}`) and
`layers.{i}.channel_scales`. The Lightning module keeps nothing else with weights (its losses have none); any other
tensor is reported as unmapped; the wavelet filter buffers are checked against `wavelet` and not imported. The architecture is read from the shapes; what shapes cannot tell (frames per
window, residuals, activation, wavelet, first-layer spline, duration) comes from the checkpoint's hyperparameters
(the reference's argparse names) or from `config_overrides`, and the import fails naming what is missing.
"""

from __future__ import annotations

import re

import torch
from huggingface_hub.errors import StrictDataclassError

from ..models.mnemodyn import MnemoDynConfig, MnemoDynModel
from ..models.mnemodyn.wavelets import wavelet_filters
from .common import ReferenceCheckpoint, WeightImportError, map_state_dict, strip_prefix

NAME = "MnemoDyn"
REPOSITORY = "https://github.com/vietluong2110/MnemoDyn_Draft"
LICENSE = "mit"
REFERENCE = "coe/light/model/orion.py @ 379a41318631df727e824e57bfac05134a322923"
MODEL_CLASS = MnemoDynModel

# reference hyperparameter → (config field, conversion)
_HPARAMS = {
    "original_length": ("num_frames", int),
    "use_residual": ("use_residual", bool),
    "nonlinearity": ("hidden_act", lambda v: {"swish": "silu"}.get(v, v)),
    "wave": ("wavelet", str),
    "interpol": ("spline", lambda v: "hermite" if v == "spline" else v),
    "duration": ("duration", float),
}


def _count(state_dict: dict, pattern: str) -> int:
    found = {int(m.group(1)) for key in state_dict if (m := re.fullmatch(pattern, key))}
    return max(found) + 1 if found else 0


def config_from_checkpoint(checkpoint: ReferenceCheckpoint, **config_overrides) -> MnemoDynConfig:
    """The `MnemoDynConfig` (computing as the reference: `MnemoDynConfig.from_reference`) of a reference state dict."""
    state = strip_prefix(checkpoint.state_dict, ("model.",))
    layers = _count(state, r"layers\.(\d+)\..*")
    if not layers or "layers.0.input_projection.weight" not in state:
        raise WeightImportError.for_source(
            checkpoint.path, expected="a MnemoDyn StackedORionModel state dict (layers.0.input_projection.weight, …)",
            found=f"keys such as {sorted(state)[:3]}",
        )  # fmt: skip
    field_hidden, rois = state["layers.0.input_projection.weight"].shape
    rank = state["layers.0.bottleneck.weight"].shape[0]
    latent = state["layers.0.feature_expansion.weight"].shape[0] // rois
    conv = state.get("layers.0.conv_layers.0.0.weight")
    values = dict(
        num_rois=int(rois),
        layer_output_sizes=[int(state[f"layers.{i}.output_projection.weight"].shape[0]) for i in range(layers)],
        field_hidden_size=int(field_hidden),
        field_rank=int(rank),
        latent_size=int(latent),
        num_dense_layers=_count(state, r"layers\.0\.dense_layers\.(\d+)\.weight"),
        wavelet_levels=_count(state, r"layers\.0\.conv_layers\.(\d+)\.0\.weight"),
        wavelet_segments=int(conv.shape[0]) if conv is not None else 1,
        wavelet_kernel_size=int(conv.shape[-1]) if conv is not None else 1,
        channel_scale="layers.0.channel_scales" in state,
        linear_bias="layers.0.input_projection.bias" in state,
    )
    hparams = checkpoint.hyper_parameters
    for source, (target, convert) in _HPARAMS.items():
        if source in hparams and hparams[source] is not None:
            values[target] = convert(hparams[source])
    values.update(config_overrides)
    needed = [name for name in ("num_frames", "use_residual") if name not in values]
    if needed:
        raise WeightImportError.for_source(
            checkpoint.path,
            expected="hyperparameters original_length and use_residual (or --set num_frames=… use_residual=…)",
            found=f"none for {', '.join(needed)}",
        )
    reference_defaults = dict(hidden_act="tanh", wavelet="db2", spline="hermite", duration=1.0)
    try:
        return MnemoDynConfig.from_reference("orion.sh", **{**reference_defaults, **values})
    except (ValueError, TypeError, StrictDataclassError) as error:
        cause = error.__cause__ if isinstance(error, StrictDataclassError) and error.__cause__ else error
        raise WeightImportError.for_source(
            checkpoint.path, expected="a consistent MnemoDyn architecture", found=str(cause).splitlines()[0]
        ) from None


def _rename(key: str) -> str | None:
    if ".wavelet_processor." in key:  # pytorch_wavelets' filter buffers: recomputed here, checked in `_check_filters`
        return None
    return re.sub(r"\.conv_layers\.(\d+)\.0\.", r".level_convs.\1.", key)


def _check_filters(state: dict, config: MnemoDynConfig, source: str) -> None:
    """The stored filter taps (pytorch_wavelets keeps them reversed, h0/h1 analysis, g0/g1 synthesis) must be the
    configured wavelet's, or the import would silently compute another transform."""
    lo, hi = (torch.tensor(taps, dtype=torch.float64) for taps in wavelet_filters(config.wavelet))
    for key, value in state.items():
        if ".wavelet_processor." not in key:
            continue
        taps = value.reshape(-1).double()
        expected = lo if key.endswith(("h0", "g0")) else hi
        if taps.numel() != expected.numel() or not (
            torch.allclose(taps, expected, atol=1e-6) or torch.allclose(taps.flip(0), expected, atol=1e-6)
        ):
            raise WeightImportError.for_source(
                source, expected=f"{config.wavelet} filter taps in {key}", found=f"{taps.tolist()}"
            )


def convert(checkpoint: ReferenceCheckpoint, **config_overrides) -> tuple[MnemoDynConfig, dict[str, torch.Tensor]]:
    """`(config, state_dict)` for `MnemoDynModel`, every reference tensor mapped by name (or `WeightImportError`)."""
    config = config_from_checkpoint(checkpoint, **config_overrides)
    state = strip_prefix(checkpoint.state_dict, ("model.",))
    _check_filters(state, config, str(checkpoint.path))
    with torch.device("meta"):
        target = MnemoDynModel(config).state_dict()
    return config, map_state_dict(state, _rename, target, str(checkpoint.path))


__all__ = ["LICENSE", "MODEL_CLASS", "NAME", "REFERENCE", "REPOSITORY", "config_from_checkpoint", "convert"]
