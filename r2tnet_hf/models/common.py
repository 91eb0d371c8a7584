"""Pieces shared by the fMRI backbones: the output type, input checks, time embedding, masked pooling, the padding
rule and a pre-norm SDPA transformer block."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ..errors import FmriInputError


@dataclass
class FmriBackboneOutput(ModelOutput):
    """Output of every backbone.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`):
            Token features after the last layer (and the final norm).
        pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            One feature vector per scan: the mean over the valid tokens.
        token_mask (`torch.BoolTensor` of shape `(batch_size, num_tokens)`):
            `True` for tokens that hold at least one real frame.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Token features after the embedding and after each layer, when `output_hidden_states=True`.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Attention probabilities of each layer, when `output_attentions=True` (eager attention only).
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    token_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def check_roi_inputs(
    fmri_values: torch.Tensor,
    attention_mask: torch.Tensor | None,
    repetition_time: torch.Tensor | float | None,
    num_rois: int,
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate ROI-series model inputs `(batch, V, T)` where they enter a model.

    Returns `(fmri_values, frame_mask, repetition_time)` with `frame_mask` boolean `(batch, time)` and
    `repetition_time` float `(batch,)` on the input's device. Raises `FmriInputError` naming both numbers, and (with
    `check_finite`, the configs' `check_finite_inputs`) for NaN or Inf in real frames.
    """
    _check_ndim(fmri_values, 3, "(batch_size, num_rois, num_timepoints)")
    rois = fmri_values.shape[1]
    if rois != num_rois:
        raise FmriInputError(f"fmri_values: input has {rois} ROIs but the model expects {num_rois} (config.num_rois)")
    frame_mask, repetition_time = _check_time_inputs(fmri_values, attention_mask, repetition_time)
    if check_finite:
        fmri_values = _check_finite(fmri_values, frame_mask)
    return fmri_values, frame_mask, repetition_time


def check_volume_inputs(
    fmri_values: torch.Tensor,
    attention_mask: torch.Tensor | None,
    repetition_time: torch.Tensor | float | None,
    num_channels: int,
    image_size: tuple[int, int, int] | list[int] | None = None,
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate volume model inputs `(batch, C, H, W, D, T)` where they enter a model.

    `image_size=None` accepts any (H, W, D) (models that pad to their strides); otherwise it must match exactly.
    Returns `(fmri_values, frame_mask, repetition_time)` as `check_roi_inputs` does.
    """
    _check_ndim(fmri_values, 6, "(batch_size, num_channels, height, width, depth, num_timepoints)")
    channels = fmri_values.shape[1]
    if channels != num_channels:
        raise FmriInputError(
            f"fmri_values: input has {channels} channels but the model expects {num_channels} (config.num_channels)"
        )
    if image_size is not None and tuple(fmri_values.shape[2:5]) != tuple(image_size):
        raise FmriInputError(
            f"fmri_values: input volume is {tuple(fmri_values.shape[2:5])} but the model expects {tuple(image_size)} "
            "(config.image_size)"
        )
    frame_mask, repetition_time = _check_time_inputs(fmri_values, attention_mask, repetition_time)
    if check_finite:
        fmri_values = _check_finite(fmri_values, frame_mask)
    return fmri_values, frame_mask, repetition_time


def _check_ndim(fmri_values, ndim: int, layout: str) -> None:
    if not torch.is_tensor(fmri_values) or fmri_values.ndim != ndim:
        found = tuple(fmri_values.shape) if torch.is_tensor(fmri_values) else type(fmri_values).__name__
        raise FmriInputError.for_source("fmri_values", expected=f"a tensor of shape {layout}", found=f"{found}")


def _check_finite(fmri_values: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Refuse NaN or Inf in real frames; return the values with non-finite masked frames set to 0 (so that padding
    holding NaN cannot reach an output through `0 × NaN`). A sum is the fast path (no tensor the size of the input);
    only when it is not finite (non-finite values somewhere, or an overflow) are the frames looked at."""
    with torch.no_grad():
        if bool(torch.isfinite(fmri_values.sum())):
            return fmri_values
        real = frame_mask.view(frame_mask.shape[0], *([1] * (fmri_values.ndim - 2)), frame_mask.shape[1])
        finite = torch.isfinite(fmri_values)
        bad = ~finite & real
        if bool(bad.any()):
            rows = torch.nonzero(bad.flatten(1).any(dim=1)).flatten().tolist()
            raise FmriInputError.for_source(
                "fmri_values",
                expected="finite values in real (unmasked) frames",
                found=f"{int(bad.sum())} NaN or Inf values in batch rows {rows}",
                hint="the processor refuses such scans by file; config.check_finite_inputs=False skips this check",
            )
    return torch.where(finite, fmri_values, torch.zeros((), dtype=fmri_values.dtype, device=fmri_values.device))


def _check_time_inputs(fmri_values, attention_mask, repetition_time) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame mask (boolean `(batch, T)`, at least one real frame per row) and the TR `(batch,)`."""
    batch, frames = fmri_values.shape[0], fmri_values.shape[-1]
    if attention_mask is None:
        frame_mask = torch.ones(batch, frames, dtype=torch.bool, device=fmri_values.device)
    else:
        if tuple(attention_mask.shape) != (batch, frames):
            raise FmriInputError.for_source(
                "attention_mask",
                expected=f"shape {(batch, frames)} (batch, time)",
                found=f"{tuple(attention_mask.shape)}",
            )
        frame_mask = attention_mask.to(device=fmri_values.device).bool()
        if not bool(frame_mask.any(dim=1).all()):
            empty = torch.nonzero(~frame_mask.any(dim=1)).flatten().tolist()
            raise FmriInputError.for_source(
                "attention_mask", expected="at least one real frame per scan", found=f"no real frame in rows {empty}"
            )
    return frame_mask, as_repetition_time(repetition_time, batch, fmri_values.device)


def as_repetition_time(repetition_time, batch: int, device: torch.device) -> torch.Tensor:
    """`repetition_time` as a float tensor `(batch,)` in seconds; a scalar is broadcast. It is required."""
    if repetition_time is None:
        raise FmriInputError.for_source(
            "repetition_time",
            expected="the TR in seconds, a float or a tensor of shape (batch_size,)",
            found="None",
            hint="models place frames in seconds; FmriProcessor returns it",
        )
    tr = torch.as_tensor(repetition_time, dtype=torch.float32, device=device)
    if tr.ndim == 0:
        tr = tr.expand(batch)
    if tr.shape != (batch,):
        raise FmriInputError.for_source("repetition_time", expected=f"shape ({batch},)", found=f"{tuple(tr.shape)}")
    if not bool(torch.isfinite(tr).all()) or bool((tr <= 0).any()):
        raise FmriInputError.for_source("repetition_time", expected="finite positive seconds", found=f"{tr.tolist()}")
    return tr


def sinusoidal_time_embedding(seconds: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """Sinusoidal features of continuous time in seconds.

    Args:
        seconds (`torch.FloatTensor` of shape `(batch_size, num_tokens)`): time of each token in seconds.
        dim (`int`): feature size (even).
        max_period (`float`): the longest period, in seconds; the shortest is 2π seconds.

    Returns:
        `torch.FloatTensor` of shape `(batch_size, num_tokens, dim)`, in float32.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=seconds.device) / max(half, 1)
    frequencies = torch.exp(-math.log(max_period) * exponent)
    angles = seconds.float().unsqueeze(-1) * frequencies
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:
        embedding = torch.nn.functional.pad(embedding, (0, 1))
    return embedding


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `features` `(batch, tokens, dim)` over the tokens where `mask` `(batch, tokens)` is true."""
    weights = mask.to(features.dtype).unsqueeze(-1)
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def masked_mean_std(features: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Statistics pooling: `[mean, std]` of `features` over the real tokens, `(batch, 2 * dim)`.

    The standard deviation over time carries second-order structure (how strongly each learned spatial pattern
    fluctuates), the information functional connectivity is built from; mean pooling alone loses most of it.
    """
    weights = mask.to(features.dtype).unsqueeze(-1)
    count = weights.sum(dim=1).clamp_min(1.0)
    mean = (features * weights).sum(dim=1) / count
    variance = (((features - mean.unsqueeze(1)) ** 2) * weights).sum(dim=1) / count
    return torch.cat([mean, torch.sqrt(variance + eps)], dim=-1)


def pad_to_multiple(values: torch.Tensor, dims: tuple[int, ...], multiples: tuple[int, ...], value=0) -> torch.Tensor:
    """Pad `values` at the END of each axis in `dims` up to the next multiple of the matching entry of `multiples`.

    This is the one padding rule of the volume backbones: the real data keeps its coordinates (index 0 stays index 0),
    and the models mask whatever the padding adds.
    """
    padding = [0] * (2 * values.ndim)
    for dim, multiple in zip(dims, multiples):
        dim = dim % values.ndim
        # F.pad lists the last axis first.
        padding[2 * (values.ndim - 1 - dim) + 1] = (-values.shape[dim]) % multiple
    if not any(padding):
        return values
    return torch.nn.functional.pad(values, padding, value=value)


class FmriAttention(torch.nn.Module):
    """Multi-head attention through `F.scaled_dot_product_attention` with a boolean mask (`True` = may attend).

    Args:
        hidden_size (`int`): query feature size (and output size).
        num_heads (`int`): attention heads; must divide `hidden_size`.
        key_value_size (`int`, *optional*): feature size of the keys/values input (cross-attention); defaults to
            `hidden_size` (self-attention).
        qkv_bias (`bool`, *optional*, defaults to `True`): bias on the query, key and value projections.
        dropout (`float`, *optional*, defaults to 0.0): dropout on the attention probabilities.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        key_value_size: int | None = None,
        qkv_bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.query = torch.nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.key_value = torch.nn.Linear(key_value_size or hidden_size, 2 * hidden_size, bias=qkv_bias)
        self.output = torch.nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`hidden_states` `(..., queries, hidden)`, `context` `(..., keys, key_value_size)` (defaults to
        `hidden_states`), `mask` boolean, broadcastable to `(..., heads, queries, keys)`. Returns `(..., queries,
        hidden)`. A query row with no allowed key gives NaN, as in SDPA: callers let every query see itself.

        Several leading axes (e.g. `(batch, windows)`) are flattened into one before SDPA (a view, no copy), and so is
        a mask with them: SDPA's fused CPU kernel takes only 4-D inputs, and on anything else it falls back to the
        math kernel, which materialises every score matrix."""
        context = hidden_states if context is None else context
        *lead, queries, hidden = hidden_states.shape
        query = self.query(hidden_states).unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)
        key, value = self.key_value(context).unflatten(-1, (2, self.num_heads, self.head_dim)).unbind(-3)
        key, value = key.transpose(-3, -2), value.transpose(-3, -2)
        if len(lead) > 1:
            query, key, value = (tensor.flatten(0, len(lead) - 1) for tensor in (query, key, value))
            if mask is not None and mask.ndim > 3:
                mask = mask.expand(*lead, *mask.shape[-3:]).flatten(0, len(lead) - 1)
        dropout = self.dropout if self.training else 0.0
        attended = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=dropout
        )
        return self.output(attended.transpose(-3, -2).reshape(*lead, queries, hidden))


class FmriMLP(torch.nn.Module):
    """Two linear layers with an activation (any key of `transformers.activations.ACT2FN`) and dropout."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.fc1 = torch.nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[hidden_act]
        self.fc2 = torch.nn.Linear(intermediate_size, hidden_size)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.activation(self.fc1(hidden_states))))


class FmriTransformerLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block, x + attn(LN(x)) then x + mlp(LN(x)), shared by the ViT, Swin and Perceiver models.

    `forward(hidden_states, mask, context=None)`: with `context` it is a cross-attention block (the queries are
    `hidden_states`, the keys and values the normalised `context`).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        hidden_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        key_value_size: int | None = None,
    ):
        super().__init__()
        self.attention_norm = torch.nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.context_norm = (
            torch.nn.LayerNorm(key_value_size, eps=layer_norm_eps) if key_value_size is not None else None
        )
        self.attention = FmriAttention(hidden_size, num_heads, key_value_size, qkv_bias, attention_dropout)
        self.mlp_norm = torch.nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = FmriMLP(hidden_size, intermediate_size, hidden_act, hidden_dropout)
        self.dropout = torch.nn.Dropout(hidden_dropout)

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        if context is not None and self.context_norm is not None:
            context = self.context_norm(context)
        attended = self.attention(self.attention_norm(hidden_states), mask, context)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.mlp(self.mlp_norm(hidden_states))


def self_attention_mask(token_mask: torch.Tensor) -> torch.Tensor:
    """Boolean SDPA mask `(..., 1, tokens, tokens)` from a token mask `(..., tokens)`: every query attends to the real
    keys, and every token also to itself, so that rows of padding stay finite (they are dropped from pooling)."""
    tokens = token_mask.shape[-1]
    eye = torch.eye(tokens, dtype=torch.bool, device=token_mask.device)
    return (token_mask.unsqueeze(-2) | eye).unsqueeze(-3)


def transformer_layers(config, count: int | None = None, **overrides) -> torch.nn.ModuleList:
    """`count` (default `config.num_hidden_layers`) `FmriTransformerLayer`s built from a config's transformers-style
    fields (`hidden_size`, `num_attention_heads`, `intermediate_size`, `hidden_act`, `layer_norm_eps`, `qkv_bias`,
    dropouts); `overrides` replace any of the layer's arguments."""
    arguments = dict(
        hidden_size=config.hidden_size,
        num_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
        qkv_bias=config.qkv_bias,
        hidden_dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob,
    )
    arguments.update(overrides)
    return torch.nn.ModuleList(
        FmriTransformerLayer(**arguments) for _ in range(config.num_hidden_layers if count is None else count)
    )


def init_transformer_weights(module: torch.nn.Module, std: float) -> None:
    """Transformer initialisation: linear weights truncated normal (±2σ) with zero biases, unit layer norms."""
    if isinstance(module, torch.nn.Linear):
        torch.nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, torch.nn.LayerNorm):
        torch.nn.init.ones_(module.weight)
        torch.nn.init.zeros_(module.bias)


def init_conv_weights(module: torch.nn.Module) -> None:
    """CNN initialisation: 3-D convolutions Kaiming-normal (fan-out, ReLU), batch norms to the identity."""
    if isinstance(module, torch.nn.Conv3d):
        torch.nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, torch.nn.BatchNorm3d):
        torch.nn.init.ones_(module.weight)
        torch.nn.init.zeros_(module.bias)
