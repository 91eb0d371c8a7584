"""MnemoDyn: the reference's stacked ORion layers, computed exactly, with what the reference gets wrong as options.

One layer (`MnemoDynLayer`, the reference's `ORionSeq` in `MnemoDyn_Draft/coe/light/model/orion.py`) maps a window
`x` `(batch, num_frames, V)` to `(batch, num_frames, V_out)`:

    u_t = dX_t/dt                                    the control path's derivative at the frames (`controls`)
    f(x_t) = act(W3 act(W2 act(W1 x_t)))  (V × k)    the field: V → d → rank (bottleneck) → V·k
    v_t = f(x_t)^T u_t                               the CDE integrand f(X) dX/dt, k channels, never built whole
    (a_L, d_L, …, d_1) = DWT_L(v)                    periodised orthogonal DWT over time, L levels
    c = act(dense_K(… act(dense_1(a_L))))            per-channel dense layers over the coarsest positions
    for l = L … 1:  [δ_l; α_l] = act(conv_l([d_l; a_l]))      full 2k → 2k convolutions, own weights per time segment
                    c = IDWT(α_l + c, δ_l)                      (c cropped or zero-padded on the left to a_l's length)
    out_t = W_o c_t (· scale)

and layers stack with `x ← x + out` when `use_residual` and the sizes agree. There is no ODE solver, in the
reference or here: the wavelet operator is a learned integral operator in time applied to the integrand, the
operator-learning reading of `z(t) = ∫ f(X_s) dX_s`.

What matches the reference (checked against outputs of its code, `tests/fixtures/mnemodyn/`): every weight and its
shape (so checkpoints import name by name, `r2tnet import-weights --from mnemodyn`), the computation above in
float32 to 1e-5, with `MnemoDynConfig.from_reference(...)` (its frame times, zero padding, last-frame pooling).

What differs, and why (each an option, the reference's behaviour one setting away):

* **Time in seconds** (`time_axis="seconds"`, the default): dX/dt per second at `i · TR`; the reference's first
  layer mixes index and time units and lags a frame (see `controls`), and ignores the TR.
* **Any length, any batch**: the reference accepts exactly `num_frames` frames. Here a scan is cut into
  `num_frames` windows; frames past its end are filled from the scan alone (`padding`), windows past its end are
  skipped, and masked frames are zeroed and left out of pooling, so a scan gives the same output alone or padded in
  a batch (the model tests' `test_batching_equivalence`).
* **Memory**: the field contraction runs in chunks of frames with recomputation in the backward pass instead of
  materialising `(batch, time, V, k)` (`bench/mnemodyn_memory.py`). The segment convolutions are one grouped
  convolution instead of `vmap` over segments (the same numbers).
* **Gradients through the control path**: the reference computes dX/dt under `no_grad`, so for layers after the
  first no gradient reaches the previous layer through it; here it does (outputs are identical).
* **Initialisation**: the reference draws convolution weights and all dense biases from N(0, 1), which with 2k·nb
  inputs per output saturates tanh; here convolutions are fan-in scaled and biases start at zero (imported weights
  replace both).
* **Pooling**: `pooler_output` is the mean over real frames (`pooling="mean"`); the reference's probes read the
  last frame (`pooling="last"`).
* Not ported: the reference's optional multi-resolution approximation loss (`use_mRLoss`), its classification head
  (`predict`) and mixed-precision wrapper; fine-tune heads here are R2T-Net's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ...errors import FmriInputError
from ..common import (
    FmriBackboneOutput,
    FmriPreTrainedModel,
    ema_update_,
    forward_docstring,
    init_kaiming,
    init_norm,
    masked_mean,
    pad_to_multiple,
)
from .configuration_mnemodyn import MnemoDynConfig
from .controls import backward_differences, field_contraction, reference_path_derivative
from .wavelets import idwt, wavedec

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


@dataclass
class MnemoDynPretrainingOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`): the objective's loss.
        reconstruction (`torch.FloatTensor` of shape `(batch_size, num_rois, num_timepoints)`, *optional*):
            The predicted series (`reconstruct`, `denoise`, `masked`).
        loss_mask (`torch.BoolTensor` of shape `(batch_size, num_rois, num_timepoints)`, *optional*):
            Where the loss was computed: real frames (`reconstruct`, `denoise`), masked blocks on real frames
            (`masked`), or the target blocks (`jepa`).
        predicted_latents (`torch.FloatTensor` of shape `(batch_size, num_timepoints, hidden_size)`, *optional*):
            `jepa`: the predictor's output.
        target_latents (`torch.FloatTensor` of shape `(batch_size, num_timepoints, hidden_size)`, *optional*):
            `jepa`: the target encoder's layer-normed latents (no gradient).
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_timepoints, hidden_size)`):
            The (context) encoder's features.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    loss_mask: torch.BoolTensor | None = None
    predicted_latents: torch.FloatTensor | None = None
    target_latents: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


class MnemoDynSegmentConv(nn.Module):
    """A full-channel temporal convolution with its own weights on each of `segments` equal time segments [the
    reference's `VmapRegionConv1D`]: the input is zero-padded at the end to a multiple of `segments`, each segment is
    convolved ('same', zero-padded at its borders) with its weights, and the result is trimmed back.

    One grouped convolution over the segments stacked as groups computes what the reference's `vmap` does.
    """

    def __init__(self, channels: int, segments: int, kernel_size: int, length: int):
        super().__init__()
        self.channels, self.segments, self.kernel_size, self.length = channels, segments, kernel_size, length
        self.weight = nn.Parameter(torch.empty(segments, channels, channels, kernel_size))
        self.bias = nn.Parameter(torch.empty(segments, channels))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        batch, channels, length = values.shape
        values = pad_to_multiple(values, (-1,), (self.segments,))
        per_segment = values.shape[-1] // self.segments
        grouped = values.view(batch, channels, self.segments, per_segment).transpose(1, 2)
        grouped = grouped.reshape(batch, self.segments * channels, per_segment)
        out = F.conv1d(
            grouped,
            self.weight.reshape(self.segments * channels, channels, self.kernel_size),
            self.bias.reshape(-1),
            padding=self.kernel_size // 2,
            groups=self.segments,
        )
        out = out.view(batch, self.segments, channels, per_segment).transpose(1, 2).reshape(batch, channels, -1)
        return out[..., :length]


class MnemoDynDense(nn.Module):
    """A dense layer over the coarsest positions, one `(L, L)` matrix per channel [`PerChannelDenseEinsum`]."""

    def __init__(self, channels: int, length: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, length, length))
        self.bias = nn.Parameter(torch.empty(channels, length))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bkd,kdf->bkf", values, self.weight) + self.bias


def fit_length(values: torch.Tensor, length: int) -> torch.Tensor:
    """The reference's `shape_correction`: zero-pad on the left, or drop the first samples, to `length`."""
    surplus = values.shape[-1] - length
    if surplus > 0:
        return values[..., surplus:]
    if surplus < 0:
        return F.pad(values, (-surplus, 0))
    return values


class MnemoDynLayer(GradientCheckpointingLayer):
    """One ORion layer: `(windows, num_frames, V_in)` → `(windows, num_frames, V_out)` (see the module docstring)."""

    def __init__(self, config: MnemoDynConfig, layer_index: int):
        super().__init__()
        self.config = config
        self.layer_index = layer_index
        rois = config.num_rois if layer_index == 0 else config.layer_output_sizes[layer_index - 1]
        out = config.layer_output_sizes[layer_index]
        k, bias = config.latent_size, config.linear_bias
        self.activation = ACTIVATIONS[config.hidden_act]()
        self.input_projection = nn.Linear(rois, config.field_hidden_size, bias=bias)
        self.bottleneck = nn.Linear(config.field_hidden_size, config.field_rank, bias=bias)
        self.feature_expansion = nn.Linear(config.field_rank, rois * k, bias=bias)
        lengths = config.level_lengths
        self.dense_layers = nn.ModuleList(MnemoDynDense(k, lengths[-1]) for _ in range(config.num_dense_layers))
        self.level_convs = nn.ModuleList(
            MnemoDynSegmentConv(2 * k, config.wavelet_segments, config.wavelet_kernel_size, length)
            for length in lengths
        )
        self.output_projection = nn.Linear(k, out, bias=bias)
        self.channel_scales = nn.Parameter(torch.ones(out)) if config.channel_scale else None

    def control(self, values: torch.Tensor, repetition_time: torch.Tensor) -> torch.Tensor:
        config = self.config
        if config.time_axis == "seconds":
            return backward_differences(values, repetition_time)
        kind = config.spline if self.layer_index == 0 else "linear"
        return reference_path_derivative(values, kind, config.duration)

    def forward(self, values: torch.Tensor, repetition_time: torch.Tensor) -> torch.Tensor:
        act = self.activation
        control = self.control(values, repetition_time)
        code = act(self.bottleneck(act(self.input_projection(values))))
        integrand = field_contraction(
            code,
            control,
            self.feature_expansion.weight,
            self.feature_expansion.bias,
            act,
            self.config.contraction_chunk_size,
        ).transpose(1, 2)  # (windows, k, frames)
        approximations, details = wavedec(integrand, self.config.wavelet_levels, self.config.wavelet)
        current = approximations[-1]
        for dense in self.dense_layers:
            current = act(dense(current))
        k = integrand.shape[1]
        for level in reversed(range(self.config.wavelet_levels)):
            mixed = act(self.level_convs[level](torch.cat([details[level], approximations[level]], dim=1)))
            current = fit_length(current, mixed.shape[-1])
            current = idwt(mixed[:, k:] + current, mixed[:, :k], self.config.wavelet)
        current = fit_length(current, values.shape[1])  # an odd num_frames reconstructs one frame more
        out = self.output_projection(current.transpose(1, 2))
        if self.channel_scales is not None:
            out = out * self.channel_scales
        if self.config.use_residual and out.shape == values.shape:
            out = values + out
        return out


class MnemoDynPreTrainedModel(FmriPreTrainedModel):
    config: MnemoDynConfig
    config_class = MnemoDynConfig
    base_model_prefix = "mnemodyn"
    _no_split_modules = ["MnemoDynLayer"]

    def _init_weights(self, module: nn.Module):
        # Linear layers as the reference (and the predictor's convolutions): Kaiming normal (fan-in), zero bias. Segment
        # convolutions and dense layers scaled by their fan-in with zero bias, where the reference draws N(0, 1)
        # weights and biases (see the module docstring).
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            init_kaiming(module, "fan_in")
        elif isinstance(module, MnemoDynSegmentConv):
            init.normal_(module.weight, std=(module.channels * module.kernel_size) ** -0.5)
            init.zeros_(module.bias)
        elif isinstance(module, MnemoDynDense):
            init.normal_(module.weight, std=module.weight.shape[-1] ** -0.5)
            init.zeros_(module.bias)
        elif isinstance(module, MnemoDynLayer) and module.channel_scales is not None:
            init.ones_(module.channel_scales)
        elif isinstance(module, MnemoDynForPretraining) and module.mask_value is not None:
            init.zeros_(module.mask_value)
        else:
            init_norm(module)


def real_lengths(frame_mask: torch.Tensor) -> torch.Tensor:
    """Frames up to and including the last real one, per scan `(batch,)`."""
    positions = torch.arange(1, frame_mask.shape[1] + 1, device=frame_mask.device)
    return (positions * frame_mask.long()).amax(dim=1)


def fill_past_end(windows: torch.Tensor, lengths: torch.Tensor, padding: str) -> torch.Tensor:
    """Frames at or past `lengths` of `windows` `(n, frames, V)` filled from the real ones: `"symmetric"` mirrors
    the window at its last real frame (x_{l-1}, x_{l-2}, …, x_0, x_0, x_1, …), `"zeros"` zeroes them."""
    frames = windows.shape[1]
    position = torch.arange(frames, device=windows.device).unsqueeze(0)
    real = position < lengths.unsqueeze(1)
    if padding == "zeros":
        return windows * real.unsqueeze(-1).to(windows.dtype)
    period = (2 * lengths).clamp_min(1).unsqueeze(1)
    folded = position % period
    source = torch.where(folded < lengths.unsqueeze(1), folded, period - 1 - folded).clamp(0, frames - 1)
    return windows.gather(1, source.unsqueeze(-1).expand_as(windows))


class MnemoDynModel(MnemoDynPreTrainedModel):
    r"""
    The MnemoDyn backbone: a parcellated series → per-frame features `(batch, time, layer_output_sizes[-1])` and a
    pooled feature per scan. Usable as an R2T-Net backbone (`R2TNetConfig(backbone_config=MnemoDynConfig(...))`).

    Example:
        >>> import torch
        >>> from r2tnet_hf import MnemoDynConfig, MnemoDynModel
        >>> config = MnemoDynConfig(num_rois=16, num_hidden_layers=2, num_frames=32, latent_size=8, field_hidden_size=8,
        ...                         wavelet_levels=2, wavelet_segments=2, num_dense_layers=1)
        >>> out = MnemoDynModel(config)(torch.randn(2, 16, 40), repetition_time=torch.tensor([0.72, 2.0]))
        >>> out.pooler_output.shape
        torch.Size([2, 16])
    """

    def __init__(self, config: MnemoDynConfig):
        super().__init__(config)
        self.layers = nn.ModuleList(MnemoDynLayer(config, i) for i in range(config.num_hidden_layers))
        self.post_init()

    @can_return_tuple
    @forward_docstring(
        fmri_values="""fmri_values (`torch.FloatTensor` of shape `(batch_size, num_rois, num_timepoints)`):
            The series, time last, as `FmriProcessor` returns it (z-scored per ROI). Any length: it is cut into
            windows of `config.num_frames`.""",
        repetition_time="""repetition_time (`torch.FloatTensor` of shape `(batch_size,)` or `float`):
            Seconds per frame. Required (with `time_axis="seconds"` dX/dt is per second).""",
        output_hidden_states="""output_hidden_states (`bool`, *optional*):
            Return the input and every layer's output, per frame.""",
    )
    def forward(
        self,
        fmri_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        repetition_time: torch.Tensor | float | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> FmriBackboneOutput:
        r"""
        Returns:
            [`FmriBackboneOutput`] with `last_hidden_state` `(batch_size, num_timepoints, hidden_size)` (zero at
            masked frames), `pooler_output` `(batch_size, hidden_size)` (mean over real frames, or the last real
            frame with `pooling="last"`) and `token_mask` (the frame mask).
        """
        _, output_hidden_states = self.output_switches(output_attentions, output_hidden_states)
        fmri_values, frame_mask, repetition_time = self.check_inputs(fmri_values, attention_mask, repetition_time)
        dtype = self.layers[0].input_projection.weight.dtype
        batch, _, frames = fmri_values.shape
        keep = frame_mask.unsqueeze(-1).to(dtype)
        values = fmri_values.transpose(1, 2).to(dtype) * keep  # (batch, time, V)

        # Windows of num_frames; frames past a scan's end filled from the scan; windows past its end skipped.
        width = self.config.num_frames
        values = pad_to_multiple(values, (1,), (width,))
        count = values.shape[1] // width
        values = values.reshape(batch * count, width, -1)
        lengths = real_lengths(frame_mask).unsqueeze(1) - torch.arange(count, device=values.device) * width
        lengths = lengths.clamp(0, width).reshape(-1)
        used = torch.nonzero(lengths > 0).squeeze(1)
        states = fill_past_end(values[used], lengths[used], self.config.padding)
        steps = repetition_time.repeat_interleave(count)[used]

        def unwindow(windowed: torch.Tensor) -> torch.Tensor:
            full = windowed.new_zeros(batch * count, width, windowed.shape[-1]).index_copy(0, used, windowed)
            return full.reshape(batch, count * width, -1)[:, :frames] * keep

        all_hidden_states = (unwindow(states),) if output_hidden_states else None
        for layer in self.layers:
            states = layer(states, steps)
            if output_hidden_states:
                all_hidden_states += (unwindow(states),)
        hidden_states = unwindow(states)
        if self.config.pooling == "last":
            last = (real_lengths(frame_mask) - 1).clamp_min(0)
            pooled = hidden_states[torch.arange(batch, device=values.device), last]
        else:
            pooled = masked_mean(hidden_states, frame_mask)
        return FmriBackboneOutput(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            token_mask=frame_mask,
            hidden_states=all_hidden_states,
        )


def masked_reconstruction_loss(
    prediction: torch.Tensor, target: torch.Tensor, loss_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE + MAE over the positions where `loss_mask` is true (nothing else enters, not even through the mean).

    Returns `(loss, count)`; the loss is 0 (with a gradient path) when no position is selected.
    """
    weights = loss_mask.to(prediction.dtype)
    count = weights.sum()
    error = (prediction - target) * weights
    loss = (error.square().sum() + error.abs().sum()) / count.clamp_min(1.0)
    return loss, count


class MnemoDynPredictorBlock(nn.Module):
    """JEPA predictor block: pre-norm depthwise temporal convolution and pre-norm MLP, both residual."""

    def __init__(self, config: MnemoDynConfig, width: int):
        super().__init__()
        self.time_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.time_mixing = nn.Conv1d(width, width, kernel_size=5, padding=2, groups=width)
        self.mlp_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, hidden_states: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        mixed = self.time_mixing((self.time_norm(hidden_states) * keep).transpose(1, 2)).transpose(1, 2)
        hidden_states = hidden_states + mixed * keep
        return hidden_states + self.mlp(self.mlp_norm(hidden_states)) * keep


class MnemoDynJepaPredictor(nn.Module):
    """Context latents (+ which ROIs of each frame were hidden) → predicted target latents, per frame."""

    def __init__(self, config: MnemoDynConfig):
        super().__init__()
        width = config.jepa_predictor_hidden_size
        self.input = nn.Linear(config.hidden_size, width)
        self.hidden_rois = nn.Linear(config.num_rois, width)  # embeds the set of hidden ROIs of each frame
        self.blocks = nn.ModuleList(MnemoDynPredictorBlock(config, width) for _ in range(config.jepa_predictor_layers))
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.output = nn.Linear(width, config.hidden_size)

    def forward(self, context: torch.Tensor, hidden_positions: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        # context (batch, T, hidden); hidden_positions (batch, V, T) bool
        keep = frame_mask.unsqueeze(-1).to(context.dtype)
        states = self.input(context) + self.hidden_rois(hidden_positions.transpose(1, 2).to(context.dtype))
        for block in self.blocks:
            states = block(states, keep)
        return self.output(self.norm(states))


class MnemoDynForPretraining(MnemoDynPreTrainedModel):
    r"""
    MnemoDyn with its pretraining objective, chosen by `config.objective`:

    * `"reconstruct"`: MSE + MAE of the series on real frames, decoded through `reconstruction_bottleneck` features per
      frame (fewer than the ROIs). With residual layers the encoder's output *is* its input plus corrections, so an
      undecimated decoder is solved by the identity (the reference's reconstruction objective, an unmasked
      autoencoder); the bottleneck makes it a real compression objective.
    * `"denoise"`: the input gets Gaussian noise (`noise_std`); the loss is MSE + MAE against the clean series.
    * `"masked"`: ROI × time blocks (`mask_roi_block` ROIs × `mask_time_block` frames, a `mask_ratio` fraction of the
      blocks touching real frames) are replaced by a learned per-ROI value; the loss is computed **only** on masked
      positions of real frames. (The draft's comment said so, but its loss covered the whole sequence.)
    * `"jepa"`: a context encoder (`mnemodyn`) sees the scan with a target block hidden; a predictor maps its latents
      to those of an EMA target encoder (`target_encoder`, a deep copy with `requires_grad=False`) run on the full
      scan, layer-normed, with smooth-L1 at the frames the block touches. Each scan gets one of three target blocks:
      cross-ROI (a `jepa_roi_ratio` share of the ROIs over all frames), cross-time (a window of `jepa_time_ratio`
      of the frames over all ROIs) or double-cross (both at once). The target encoder is part of the state dict, so
      it is saved and loaded with the model; call `after_optimizer_step(progress)` after every optimizer step.

    `MnemoDynModel.from_pretrained` on a checkpoint of this class loads the context encoder.
    """

    def __init__(self, config: MnemoDynConfig):
        super().__init__(config)
        self.mnemodyn = MnemoDynModel(config)
        objective = config.objective
        if objective == "reconstruct":
            self.decoder = nn.Sequential(
                nn.Linear(config.hidden_size, config.reconstruction_bottleneck),
                nn.Linear(config.reconstruction_bottleneck, config.num_rois),
            )
        else:
            self.decoder = None if objective == "jepa" else nn.Linear(config.hidden_size, config.num_rois)
        self.mask_value = nn.Parameter(torch.zeros(config.num_rois)) if objective in ("masked", "jepa") else None
        self.predictor = MnemoDynJepaPredictor(config) if objective == "jepa" else None
        self.target_encoder = None
        if objective == "jepa":
            self.target_encoder = copy.deepcopy(self.mnemodyn)
        self.post_init()
        if self.target_encoder is not None:
            self.copy_context_to_target()
            self.freeze_target_encoder()

    @torch.no_grad()
    def copy_context_to_target(self) -> None:
        """Make the target encoder an exact copy of the context encoder (as at the start of JEPA training)."""
        for target, context in zip(self.target_encoder.parameters(), self.mnemodyn.parameters()):
            target.copy_(context)

    def momentum(self, progress: float) -> float:
        """The EMA momentum at training `progress` in [0, 1]: linear from `jepa_momentum_start` to `_end`."""
        progress = min(max(float(progress), 0.0), 1.0)
        start, end = self.config.jepa_momentum_start, self.config.jepa_momentum_end
        return start + (end - start) * progress

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        """Call after every optimizer step with `progress = step / total_steps`.

        `jepa`: target ← m · target + (1 − m) · context, with m = `momentum(progress)`. Other objectives: nothing.
        """
        if self.target_encoder is not None:
            ema_update_(self.target_encoder, self.mnemodyn, self.momentum(progress))

    def freeze_target_encoder(self) -> None:
        """The target encoder is never trained: `requires_grad=False` and eval mode."""
        if self.target_encoder is not None:
            self.target_encoder.requires_grad_(False)
            self.target_encoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.freeze_target_encoder()
        return self

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # Loading replaces the parameters (with requires_grad=True); freeze the target encoder again.
        model = super().from_pretrained(*args, **kwargs)
        if isinstance(model, MnemoDynForPretraining):
            model.freeze_target_encoder()
        return model

    def _noise(self, shape, reference: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=reference.device, dtype=reference.dtype)

    def _uniform(self, shape, reference: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=reference.device, dtype=torch.float32)

    def block_mask(self, frame_mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`masked`: a boolean `(batch, V, T)` mask of ROI × time blocks, a `mask_ratio` share of the blocks that touch
        real frames (at least one block per scan). ROI blocks group ROIs by a random permutation per scan."""
        config = self.config
        batch, frames = frame_mask.shape
        rois = config.num_rois
        roi_blocks = math.ceil(rois / config.mask_roi_block)
        time_blocks = math.ceil(frames / config.mask_time_block)
        block_of_frame = torch.arange(frames, device=frame_mask.device) // config.mask_time_block
        # A time block is eligible if it holds a real frame.
        padded = pad_to_multiple(frame_mask, (1,), (config.mask_time_block,), value=False)
        eligible_time = padded.view(batch, time_blocks, config.mask_time_block).any(dim=-1)
        scores = self._uniform((batch, roi_blocks, time_blocks), frame_mask, generator)
        scores = scores.masked_fill(~eligible_time.unsqueeze(1), float("inf"))
        eligible = eligible_time.sum(dim=1) * roi_blocks
        count = (eligible.float() * config.mask_ratio).round().clamp_min(1).long()
        ranks = scores.flatten(1).argsort(dim=1).argsort(dim=1)
        chosen = (ranks < count.unsqueeze(1)).view(batch, roi_blocks, time_blocks)
        roi_order = self._uniform((batch, rois), frame_mask, generator).argsort(dim=1)
        roi_block = torch.empty_like(roi_order)
        roi_block.scatter_(
            1, roi_order, (torch.arange(rois, device=frame_mask.device) // config.mask_roi_block).expand(batch, -1)
        )
        by_roi = chosen.gather(1, roi_block.unsqueeze(-1).expand(-1, -1, time_blocks))  # (batch, V, time_blocks)
        return by_roi[..., block_of_frame] & frame_mask.unsqueeze(1)

    def jepa_target_blocks(
        self, frame_mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`jepa`: per scan, one of cross-ROI, cross-time or double-cross (cycling through the batch).

        Returns `(hidden_positions, target_frames)`: boolean `(batch, V, T)` positions hidden from the context
        encoder, and `(batch, T)` real frames whose latents are predicted (every real frame for blocks with a cross-
        ROI part, the window for cross-time).
        """
        config = self.config
        batch, frames = frame_mask.shape
        device = frame_mask.device
        lengths = frame_mask.sum(dim=1)
        kind = torch.arange(batch, device=device) % 3  # 0 cross-ROI, 1 cross-time, 2 double-cross
        offset = int(self._uniform((1,), frame_mask, generator).item() * 3)
        kind = (kind + offset) % 3
        num_roi_targets = max(1, round(config.jepa_roi_ratio * config.num_rois))
        roi_rank = self._uniform((batch, config.num_rois), frame_mask, generator).argsort(dim=1).argsort(dim=1)
        roi_target = roi_rank < num_roi_targets  # (batch, V)
        window = (lengths.float() * config.jepa_time_ratio).round().clamp_min(1)
        start = (self._uniform((batch,), frame_mask, generator) * (lengths.float() - window + 1)).floor()
        frame_index = torch.arange(frames, device=device).float()
        time_target = (frame_index >= start.unsqueeze(1)) & (frame_index < (start + window).unsqueeze(1)) & frame_mask
        use_roi = (kind != 1).view(batch, 1, 1)
        use_time = (kind != 0).view(batch, 1, 1)
        hidden_positions = (use_roi & roi_target.unsqueeze(-1)) | (use_time & time_target.unsqueeze(1))
        hidden_positions = hidden_positions & frame_mask.unsqueeze(1)
        target_frames = torch.where((kind != 1).unsqueeze(1), frame_mask, time_target)
        return hidden_positions, target_frames

    @can_return_tuple
    @forward_docstring(
        labels="""labels (`torch.FloatTensor` of shape `(batch_size, num_rois, num_timepoints)`, *optional*):
            The clean target series for `reconstruct`, `denoise` and `masked`; defaults to `fmri_values`.""",
        generator="""generator (`torch.Generator`, *optional*):
            The source of noise, masks and target blocks.""",
        seed="""seed (`int`, *optional*):
            A seed for a fresh generator (ignored when `generator` is given).""",
    )
    def forward(
        self,
        fmri_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        repetition_time: torch.Tensor | float | None = None,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> MnemoDynPretrainingOutput:
        r"""
        Returns:
            [`MnemoDynPretrainingOutput`]: the objective's loss, where it was computed, and what it compared.
        """
        fmri_values, frame_mask, repetition_time = self.check_inputs(fmri_values, attention_mask, repetition_time)
        if labels is not None and labels.shape != fmri_values.shape:
            raise FmriInputError.for_source(
                "labels", expected=f"shape {tuple(fmri_values.shape)} (as fmri_values)", found=f"{tuple(labels.shape)}"
            )
        if generator is None and seed is not None:
            generator = torch.Generator(device=fmri_values.device).manual_seed(seed)
        dtype = self.mnemodyn.layers[0].input_projection.weight.dtype
        fmri_values = fmri_values.to(dtype)
        target = (fmri_values if labels is None else labels.to(dtype)) * frame_mask.unsqueeze(1).to(dtype)
        objective = self.config.objective
        if objective == "jepa":
            return self._jepa(fmri_values, frame_mask, repetition_time, generator)
        return self._reconstruction(fmri_values, target, frame_mask, repetition_time, generator)

    def _reconstruction(self, fmri_values, target, frame_mask, repetition_time, generator):
        objective = self.config.objective
        frames_everywhere = frame_mask.unsqueeze(1).expand_as(fmri_values)
        inputs, loss_mask = fmri_values, frames_everywhere
        if objective == "denoise":
            inputs = fmri_values + self.config.noise_std * self._noise(fmri_values.shape, fmri_values, generator)
        elif objective == "masked":
            loss_mask = self.block_mask(frame_mask, generator)
            inputs = torch.where(loss_mask, self.mask_value.view(1, -1, 1).to(fmri_values.dtype), fmri_values)
        encoded = self.mnemodyn(inputs, frame_mask, repetition_time, return_dict=True).last_hidden_state
        reconstruction = self.decoder(encoded).transpose(1, 2)
        loss, _ = masked_reconstruction_loss(reconstruction, target, loss_mask)
        return MnemoDynPretrainingOutput(
            loss=loss,
            reconstruction=reconstruction,
            loss_mask=loss_mask,
            last_hidden_state=encoded,
        )

    def _jepa(self, fmri_values, frame_mask, repetition_time, generator):
        hidden_positions, target_frames = self.jepa_target_blocks(frame_mask, generator)
        with torch.no_grad():
            self.target_encoder.eval()
            target = self.target_encoder(fmri_values, frame_mask, repetition_time, return_dict=True).last_hidden_state
            target = F.layer_norm(target, (target.shape[-1],))
        context_input = torch.where(hidden_positions, self.mask_value.view(1, -1, 1).to(fmri_values.dtype), fmri_values)
        context = self.mnemodyn(context_input, frame_mask, repetition_time, return_dict=True).last_hidden_state
        predicted = self.predictor(context, hidden_positions, frame_mask)
        weights = target_frames.unsqueeze(-1).to(predicted.dtype)
        error = F.smooth_l1_loss(predicted, target, reduction="none") * weights
        loss = error.sum() / (weights.sum() * predicted.shape[-1]).clamp_min(1.0)
        return MnemoDynPretrainingOutput(
            loss=loss,
            loss_mask=hidden_positions,
            predicted_latents=predicted,
            target_latents=target,
            last_hidden_state=context,
        )


__all__ = [
    "MnemoDynForPretraining",
    "MnemoDynModel",
    "MnemoDynPreTrainedModel",
    "MnemoDynPretrainingOutput",
    "masked_reconstruction_loss",
]
