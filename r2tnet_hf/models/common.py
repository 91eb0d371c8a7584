"""Pieces shared by the fMRI models: the output type, the base class, input checks, the argument docstrings of
`forward`, time embedding, masked pooling, the padding rule, the attention functions and a pre-norm transformer block,
weight initialisation and the EMA update."""

from __future__ import annotations

import inspect
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
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


# The one description of each argument the fMRI models' `forward` methods share (`forward_docstring` lists them).
FORWARD_ARGUMENTS = {
    "fmri_values": """fmri_values (`torch.FloatTensor`):
    The scans, time last, as `FmriProcessor` returns them: `(batch_size, num_rois, num_timepoints)` for series of
    ROIs or grayordinates, `(batch_size, num_channels, height, width, depth, num_timepoints)` for volumes (the
    model's config says which).""",
    "attention_mask": """attention_mask (`torch.LongTensor` of shape `(batch_size, num_timepoints)`, *optional*):
    1 for real frames, 0 for padding; masked frames never change the output of the real ones. Defaults to all ones.""",
    "repetition_time": """repetition_time (`torch.FloatTensor` of shape `(batch_size,)` or `float`):
    Seconds per frame (the TR). Required: models place frames in seconds, and it is checked like every model's
    even where a model does not use it.""",
    "output_attentions": """output_attentions (`bool`, *optional*):
    Return the attention probabilities of every attention layer in `attentions`. They are computed by the eager
    attention function for that call, whatever `config._attn_implementation` is. Models without attention refuse it
    with a `ValueError`.""",
    "output_hidden_states": """output_hidden_states (`bool`, *optional*):
    Return the token features after the embedding and after every layer in `hidden_states`.""",
    "return_dict": """return_dict (`bool`, *optional*):
    Return a `ModelOutput` (the default, `config.return_dict`) or, with `False`, a tuple of its fields that are
    not `None`.""",
}


def forward_docstring(**specific: str) -> Callable:
    """Decorator writing the `Args:` section of a `forward` docstring: each parameter is described by its entry in
    `specific` (arguments of one model, or one whose meaning differs there) or else by `FORWARD_ARGUMENTS`.
    `return_dict` is listed too (`can_return_tuple` takes it). The function's own docstring follows (Returns)."""

    def decorate(forward: Callable) -> Callable:
        names = [name for name in inspect.signature(forward).parameters if name != "self"] + ["return_dict"]
        undocumented = [name for name in names if name not in specific and name not in FORWARD_ARGUMENTS]
        if undocumented:
            raise TypeError(f"{forward.__qualname__}: no docstring for {undocumented}")
        entries = []
        for name in names:  # the name line, then the description (its own indentation made four spaces)
            head, _, description = (specific.get(name) or FORWARD_ARGUMENTS[name]).strip().partition("\n")
            entries.append(head + "\n" + textwrap.indent(textwrap.dedent(description), "    "))
        arguments = textwrap.indent("\n".join(entries), "    ")
        own = inspect.cleandoc(forward.__doc__ or "")
        forward.__doc__ = f"Args:\n{arguments}\n\n{own}".rstrip() + "\n"
        return forward

    return decorate


class FmriPreTrainedModel(PreTrainedModel):
    """What every fMRI model shares: the input name, gradient checkpointing, no token-embedding table, the input
    checks and the output switches of `forward`. `_supports_sdpa` is set by the models whose attention runs through
    `ALL_ATTENTION_FUNCTIONS`; the others have no attention and refuse `output_attentions`."""

    main_input_name = "fmri_values"
    supports_gradient_checkpointing = True

    def get_input_embeddings(self):
        """None: fMRI input has no token-embedding table (transformers' default raises, and Accelerate's FSDP2
        preparation asks for it)."""
        return None

    def check_inputs(self, fmri_values, attention_mask, repetition_time, image_size=None):
        """`check_roi_inputs` or `check_volume_inputs` (with `image_size`, if given) against this model's config: ROI
        series `(batch, V, T)` for a config with `num_rois` (unless its `input_type` says `"volume"`), else volumes."""
        config = self.config
        if getattr(config, "input_type", "roi" if hasattr(config, "num_rois") else "volume") == "roi":
            return check_roi_inputs(
                fmri_values, attention_mask, repetition_time, config.num_rois, check_finite=config.check_finite_inputs
            )
        return check_volume_inputs(
            fmri_values,
            attention_mask,
            repetition_time,
            config.num_channels,
            image_size,
            check_finite=config.check_finite_inputs,
        )

    def output_switches(self, output_attentions: bool | None, output_hidden_states: bool | None) -> tuple[bool, bool]:
        """`(output_attentions, output_hidden_states)`, each defaulting to the config's; `output_attentions` is
        refused by a model without attention."""
        output_attentions = bool(self.config.output_attentions if output_attentions is None else output_attentions)
        if output_attentions and not self._supports_sdpa:
            raise ValueError(f"{type(self).__name__} has no attention: output_attentions is not supported")
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return output_attentions, bool(hidden)


class FmriTransformerPreTrainedModel(FmriPreTrainedModel):
    """The transformer backbones built of `FmriTransformerLayer`s (attention through the interface), with their
    initialisation: linear layers truncated normal (±2σ, σ = `config.initializer_range`) with zero biases, norms to
    the identity, and every parameter a model declares itself (position tables, tokens, embeddings) truncated normal
    too."""

    _supports_sdpa = True
    _no_split_modules = ["FmriTransformerLayer"]

    def _init_weights(self, module: nn.Module):
        std = self.config.initializer_range
        init_transformer_weights(module, std)
        if not isinstance(module, (nn.Linear, nn.LayerNorm)):
            for parameter in module.parameters(recurse=False):
                init_truncated(parameter, std)


class FmriConvPreTrainedModel(FmriPreTrainedModel):
    """The per-frame CNN backbones, with their initialisation (`init_conv_weights`)."""

    def _init_weights(self, module: nn.Module):
        init_conv_weights(module)


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


def require_real_frames(frame_mask: torch.Tensor, minimum: int, purpose: str) -> None:
    """Refuse scans with fewer than `minimum` real frames (`FmriInputError` naming the rows); `purpose` says what
    needs them, e.g. "connectivity"."""
    real_frames = frame_mask.sum(dim=1)
    if int(real_frames.min()) < minimum:
        short = torch.nonzero(real_frames < minimum).flatten().tolist()
        raise FmriInputError.for_source(
            "attention_mask",
            expected=f"at least {minimum} real frames per scan for {purpose}",
            found=f"fewer in rows {short}",
        )


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
        embedding = nn.functional.pad(embedding, (0, 1))
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
    return nn.functional.pad(values, padding, value=value)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention computed step by step, the `"eager"` entry of the models' attention interface.

    `query` `(batch, heads, queries, head_dim)`, `key` and `value` `(batch, heads, keys, head_dim)`, and
    `attention_mask` broadcastable to `(batch, heads, queries, keys)`: boolean (`True` = may attend, as SDPA's) or
    additive. Returns `(output, weights)`: `(batch, queries, heads, head_dim)`, as transformers' SDPA function, and the
    probabilities `(batch, heads, queries, keys)` (softmax in float32, before dropout)."""
    if scaling is None:
        scaling = 1.0 / math.sqrt(query.shape[-1])  # SDPA's default scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    dropped = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(dropped, value).transpose(1, 2).contiguous(), weights


class FmriAttention(nn.Module):
    """Multi-head attention through the attention interface (`config._attn_implementation`: `"sdpa"`, the default,
    or `"eager"`) with a boolean (`True` = may attend) or additive mask.

    Args:
        hidden_size (`int`): query feature size (and output size).
        num_heads (`int`): attention heads; must divide `hidden_size`.
        key_value_size (`int`, *optional*): feature size of the keys/values input (cross-attention); defaults to
            `hidden_size` (self-attention).
        qkv_bias (`bool`, *optional*, defaults to `True`): bias on the query, key and value projections.
        dropout (`float`, *optional*, defaults to 0.0): dropout on the attention probabilities.
        config (`PreTrainedConfig`, *optional*): the model's config, whose `_attn_implementation` picks the attention
            function at every call (so `set_attn_implementation` reaches it); without one, SDPA.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        key_value_size: int | None = None,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        config=None,
    ):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.is_causal = False  # read by transformers' SDPA function, which otherwise assumes a decoder
        self.query = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.key_value = nn.Linear(key_value_size or hidden_size, 2 * hidden_size, bias=qkv_bias)
        self.output = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`hidden_states` `(..., queries, hidden)`, `context` `(..., keys, key_value_size)` (defaults to
        `hidden_states`), `mask` boolean or additive, broadcastable to `(..., heads, queries, keys)`. Returns `(...,
        queries, hidden)`, and with `output_attentions` also the probabilities `(prod(...), heads, queries, keys)`
        (eager for that call). A query row with no allowed key gives NaN, as in SDPA: callers let every query see
        itself.

        Several leading axes (e.g. `(batch, windows)`) are flattened into one before the attention function (a view,
        no copy), and so is a mask with them: SDPA's fused CPU kernel takes only 4-D inputs, and on anything else it
        falls back to the math kernel, which materialises every score matrix."""
        context = hidden_states if context is None else context
        *lead, queries, hidden = hidden_states.shape
        query = self.query(hidden_states).unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)
        key, value = self.key_value(context).unflatten(-1, (2, self.num_heads, self.head_dim)).unbind(-3)
        key, value = key.transpose(-3, -2), value.transpose(-3, -2)
        if len(lead) > 1:
            query, key, value = (tensor.flatten(0, len(lead) - 1) for tensor in (query, key, value))
            if mask is not None and mask.ndim > 3:
                mask = mask.expand(*lead, *mask.shape[-3:]).flatten(0, len(lead) - 1)
        implementation = "sdpa" if self.config is None else self.config._attn_implementation
        attention_interface = (
            eager_attention_forward
            if output_attentions
            else ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        )
        attended, weights = attention_interface(
            self, query, key, value, mask, dropout=self.dropout if self.training else 0.0
        )
        output = self.output(attended.reshape(*lead, queries, hidden))
        return (output, weights) if output_attentions else output


class FmriMLP(nn.Module):
    """Two linear layers with an activation (any key of `transformers.activations.ACT2FN`) and dropout."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.activation(self.fc1(hidden_states))))


class FmriTransformerLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block, x + attn(LN(x)) then x + mlp(LN(x)), shared by the ViT, Swin, Perceiver and
    connectome models.

    `forward(hidden_states, mask, context=None, output_attentions=False, keep=None)`: with `context` it is a
    cross-attention block (the queries are `hidden_states`, the keys and values the normalised `context`); `keep`
    (1 for tokens, 0 for window padding) zeroes the normalised features of padding before the attention, as SwiFT pads
    each block after its first norm. Returns the new hidden states, and with `output_attentions` also the attention
    probabilities.
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
        config=None,
    ):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.context_norm = nn.LayerNorm(key_value_size, eps=layer_norm_eps) if key_value_size is not None else None
        self.attention = FmriAttention(hidden_size, num_heads, key_value_size, qkv_bias, attention_dropout, config)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = FmriMLP(hidden_size, intermediate_size, hidden_act, hidden_dropout)
        self.dropout = nn.Dropout(hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        output_attentions: bool = False,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if context is not None and self.context_norm is not None:
            context = self.context_norm(context)
        normed = self.attention_norm(hidden_states)
        if keep is not None:
            normed = normed * keep
        attended = self.attention(normed, mask, context, output_attentions=output_attentions)
        attended, weights = attended if output_attentions else (attended, None)
        hidden_states = hidden_states + self.dropout(attended)
        hidden_states = hidden_states + self.mlp(self.mlp_norm(hidden_states))
        return (hidden_states, weights) if output_attentions else hidden_states


def run_layers(
    layers: nn.ModuleList,
    hidden_states: torch.Tensor,
    mask: torch.Tensor | None = None,
    output_attentions: bool = False,
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, tuple | None, tuple | None]:
    """`hidden_states` through `layers` (each called as `layer(hidden_states, mask)`), in order. Returns the last
    hidden states, the hidden states (the input, then each layer's output) when `output_hidden_states`, and each
    layer's attention probabilities when `output_attentions` (else `None`)."""
    all_hidden_states = (hidden_states,) if output_hidden_states else None
    all_attentions = () if output_attentions else None
    for layer in layers:
        if output_attentions:
            hidden_states, weights = layer(hidden_states, mask, output_attentions=True)
            all_attentions += (weights,)
        else:
            hidden_states = layer(hidden_states, mask)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
    return hidden_states, all_hidden_states, all_attentions


def self_attention_mask(token_mask: torch.Tensor) -> torch.Tensor:
    """Boolean SDPA mask `(..., 1, tokens, tokens)` from a token mask `(..., tokens)`: every query attends to the real
    keys, and every token also to itself, so that rows of padding stay finite (they are dropped from pooling)."""
    tokens = token_mask.shape[-1]
    eye = torch.eye(tokens, dtype=torch.bool, device=token_mask.device)
    return (token_mask.unsqueeze(-2) | eye).unsqueeze(-3)


# `FmriTransformerLayer` argument → the transformers-style config field it is read from
LAYER_FIELDS = {
    "hidden_size": "hidden_size",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "hidden_act": "hidden_act",
    "layer_norm_eps": "layer_norm_eps",
    "qkv_bias": "qkv_bias",
    "hidden_dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
}


def transformer_layers(config, count: int | None = None, **overrides) -> nn.ModuleList:
    """`count` (default `config.num_hidden_layers`) `FmriTransformerLayer`s built from a config's transformers-style
    fields (`LAYER_FIELDS`), attending through `config._attn_implementation`; `overrides` give any of the layer's
    arguments instead (the config's field is then not read)."""
    arguments = {
        argument: getattr(config, field) for argument, field in LAYER_FIELDS.items() if argument not in overrides
    }
    arguments.update(overrides)
    return nn.ModuleList(
        FmriTransformerLayer(**arguments, config=config)
        for _ in range(config.num_hidden_layers if count is None else count)
    )


# Initialisation: `transformers.initialization` functions, which leave alone a tensor marked `_is_hf_initialized`
# (loaded from a checkpoint), and no call to `PreTrainedModel._init_weights` before them: every tensor is drawn once.


def init_transformer_weights(module: nn.Module, std: float) -> None:
    """Transformer initialisation: linear weights truncated normal (±2σ) with zero biases, unit layer norms."""
    if isinstance(module, nn.Linear):
        init_truncated(module.weight, std)
        if module.bias is not None:
            init.zeros_(module.bias)
    else:
        init_norm(module)


def init_truncated(tensor: torch.Tensor, std: float) -> None:
    """Truncated normal, mean 0, standard deviation `std`, cut at ±2`std`."""
    init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


def init_conv_weights(module: nn.Module) -> None:
    """CNN initialisation: 3-D convolutions Kaiming-normal (fan-out, ReLU), batch norms to the identity."""
    if isinstance(module, nn.Conv3d):
        init_kaiming(module, "fan_out")
    else:
        init_norm(module)


def init_kaiming(module: nn.Module, mode: str) -> None:
    """A linear or convolution layer's weight Kaiming-normal for ReLU (`mode` `"fan_in"` or `"fan_out"`), its bias
    zero."""
    init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
    if module.bias is not None:
        init.zeros_(module.bias)


def init_norm(module: nn.Module) -> None:
    """Layer and batch norms to the identity (unit weights, zero biases), batch-norm statistics to their start."""
    if isinstance(module, (nn.LayerNorm, nn.modules.batchnorm._NormBase)):
        if module.weight is not None:
            init.ones_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)
    if isinstance(module, nn.modules.batchnorm._NormBase) and module.running_mean is not None:
        init.zeros_(module.running_mean)
        init.ones_(module.running_var)
        init.zeros_(module.num_batches_tracked)


@torch.no_grad()
def ema_update_(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """In place, parameter by parameter: `target ← momentum · target + (1 − momentum) · source` (an exponential
    moving average of `source`'s weights; `target` has the same structure)."""
    for average, current in zip(target.parameters(), source.parameters(), strict=True):
        average.mul_(momentum).add_(current.detach(), alpha=1.0 - momentum)
