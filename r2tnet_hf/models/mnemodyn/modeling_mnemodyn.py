"""MnemoDyn: a multi-resolution wavelet operator with CDE-style updates driven by the observed series.

The observed ROI series is the control path X(t) of a controlled differential equation dh = F(h) dX. Each layer
applies, at every frame,

    h ← h + WaveletOperator(LN(h))                    temporal mixing across scales (db2 DWT → convs → inverse DWT)
    h ← h + F(LN(h)) · dX/dt                          one CDE step, F a low-rank MLP field, dX/dt per second

so the stack is a depth-wise discretisation of the CDE (one step per layer, evaluated at every frame in parallel), and
the wavelet operator carries information along time. dX/dt comes from an interpolating spline whose time axis is in
seconds (frame × TR), not the draft's t ∈ [0, 1] per scan. The contraction F(h) · dX/dt never builds the
`(batch, time, hidden, k)` field (`low_rank_field_contraction`).

Variable length: padded frames are zeroed at entry and after every layer, get dX/dt = 0, and are left out of pooling
and of every loss. The time axis is padded (with zeros, masked) to a multiple of `2**wavelet_levels`; the periodised
DWT wraps the end of the padded axis onto its start, so a scan's last frames see its first frames, and padding (in
the batch or to the multiple) can change the real frames' features near the end within the filters' reach.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...errors import FmriInputError
from ..common import FmriBackboneOutput, check_roi_inputs, masked_mean, sinusoidal_time_embedding
from .configuration_mnemodyn import MnemoDynConfig
from .controls import low_rank_field_contraction, spline_derivative
from .wavelets import wavedec, waverec


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
        consistency_loss (`torch.FloatTensor` of shape `()`, *optional*): `reconstruct` with `consistency_weight > 0`.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_timepoints, hidden_size)`):
            The (context) encoder's features.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    loss_mask: torch.BoolTensor | None = None
    predicted_latents: torch.FloatTensor | None = None
    target_latents: torch.FloatTensor | None = None
    consistency_loss: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


def pad_to_multiple(values: torch.Tensor, frame_mask: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad the last axis of `values` `(batch, channels, time)` and `frame_mask` to a multiple of `multiple`."""
    pad = (-values.shape[-1]) % multiple
    if pad:
        values = F.pad(values, (0, pad))
        frame_mask = F.pad(frame_mask, (0, pad), value=False)
    return values, frame_mask


class MnemoDynSegmentConv(nn.Module):
    """Depthwise temporal convolution with its own kernel for each of `segments` time segments.

    A position's segment is its place within the scan's real length (so padding does not move segment borders).
    """

    def __init__(self, channels: int, segments: int, kernel_size: int):
        super().__init__()
        self.channels, self.segments, self.kernel_size = channels, segments, kernel_size
        self.weight = nn.Parameter(torch.empty(channels * segments, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels * segments))

    def forward(self, values: torch.Tensor, lengths: torch.Tensor, stride: int) -> torch.Tensor:
        # values (batch, channels, n) at a level whose coefficients are `stride` frames apart.
        batch, channels, n = values.shape
        out = F.conv1d(values, self.weight, self.bias, padding=self.kernel_size // 2, groups=channels)
        out = out.view(batch, channels, self.segments, n)
        frame = torch.arange(n, device=values.device, dtype=torch.float32) * stride
        segment = (frame.unsqueeze(0) * self.segments / lengths.float().unsqueeze(1)).long().clamp(0, self.segments - 1)
        one_hot = F.one_hot(segment, self.segments).to(values.dtype).permute(0, 2, 1)  # (batch, segments, n)
        return (out * one_hot.unsqueeze(1)).sum(dim=2)


class MnemoDynWaveletOperator(nn.Module):
    """DWT (db2, periodisation) → per-level segment convolutions, dense channel mixing on the coarsest approximation
    → inverse DWT → activation → output projection."""

    def __init__(self, config: MnemoDynConfig, channels: int | None = None):
        super().__init__()
        channels = channels or config.hidden_size
        self.levels = config.wavelet_levels
        self.detail_convs = nn.ModuleList(
            MnemoDynSegmentConv(channels, config.wavelet_segments, config.wavelet_kernel_size)
            for _ in range(config.wavelet_levels)
        )
        self.approximation_conv = MnemoDynSegmentConv(channels, config.wavelet_segments, config.wavelet_kernel_size)
        self.approximation_mixing = nn.Linear(channels, channels)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(channels, channels)
        self.output.init_scale = "depth"

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # hidden_states (batch, time, channels), time a multiple of 2**levels.
        values = hidden_states.transpose(1, 2)
        approximation, details = wavedec(values, self.levels)
        details = [
            conv(d, lengths, 2 ** (level + 1)) for level, (conv, d) in enumerate(zip(self.detail_convs, details))
        ]
        approximation = self.approximation_conv(approximation, lengths, 2**self.levels) + self.approximation_mixing(
            approximation.transpose(1, 2)
        ).transpose(1, 2)
        mixed = waverec(approximation, details).transpose(1, 2)
        return self.output(self.activation(mixed))


class MnemoDynVectorField(nn.Module):
    """F(h): state → d → rank (bottleneck) → state · k, contracted with dX/dt without materialising F."""

    def __init__(self, config: MnemoDynConfig):
        super().__init__()
        self.config = config
        self.fc1 = nn.Linear(config.hidden_size, config.field_hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.bottleneck = nn.Linear(config.field_hidden_size, config.field_rank)
        self.expand = nn.Linear(config.field_rank, config.hidden_size * config.num_control_channels)
        self.expand.init_scale = "field"

    def code(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.activation(self.fc1(hidden_states)))

    def forward(self, hidden_states: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        """`F(h) · u` for `hidden_states` `(batch, time, hidden)` and `control` `(batch, time, k)`."""
        return low_rank_field_contraction(
            self.code(hidden_states),
            control,
            self.expand.weight,
            self.expand.bias,
            chunk_size=self.config.contraction_chunk_size,
        )


class MnemoDynLayer(GradientCheckpointingLayer):
    """Pre-norm: h + wavelet(LN(h)), then h + F(LN(h)) · dX/dt; padded frames kept at zero."""

    def __init__(self, config: MnemoDynConfig):
        super().__init__()
        self.wavelet_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.wavelet = MnemoDynWaveletOperator(config)
        self.field_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.field = MnemoDynVectorField(config)

    def forward(
        self, hidden_states: torch.Tensor, control: torch.Tensor, frame_mask: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        keep = frame_mask.unsqueeze(-1).to(hidden_states.dtype)
        hidden_states = hidden_states + self.wavelet(self.wavelet_norm(hidden_states), lengths) * keep
        hidden_states = hidden_states + self.field(self.field_norm(hidden_states), control) * keep
        return hidden_states


class MnemoDynPreTrainedModel(PreTrainedModel):
    config: MnemoDynConfig
    config_class = MnemoDynConfig
    base_model_prefix = "mnemodyn"
    main_input_name = "fmri_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MnemoDynLayer"]

    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        config = self.config
        if isinstance(module, nn.Linear):
            # Linear layers carry an `init_scale` tag where they need more than `initializer_range`:
            # - "depth": the last layer of a residual branch, std / sqrt(2 · layers), so a deep stack starts near the
            #   identity (the draft drew its convolution weights with std 1, which grows activations layer by layer);
            # - "field": the field's output layer, also divided by sqrt(k) since F · dX/dt sums k products;
            # - "rois": input maps from V z-scored ROIs, std 1 / sqrt(V) for unit-variance features whatever V.
            std = config.initializer_range
            depth_std = std / math.sqrt(2 * config.num_hidden_layers)
            scale = getattr(module, "init_scale", None)
            if scale == "rois":
                init.normal_(module.weight, std=config.num_rois**-0.5)
            else:
                if scale == "depth":
                    std = depth_std
                elif scale == "field":
                    std = depth_std / math.sqrt(config.num_control_channels)
                init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, MnemoDynSegmentConv):
            # Unit gain for a depthwise kernel: std 1 / sqrt(kernel_size).
            init.normal_(module.weight, std=module.kernel_size**-0.5)
            init.zeros_(module.bias)


class MnemoDynEmbedding(nn.Module):
    """Lift each frame's V ROIs to `hidden_size` (plus the time embedding in seconds); map the path to k channels."""

    def __init__(self, config: MnemoDynConfig):
        super().__init__()
        self.config = config
        self.projection = nn.Linear(config.num_rois, config.hidden_size)
        self.projection.init_scale = "rois"
        self.time_projection = nn.Linear(config.hidden_size, config.hidden_size)
        self.control_projection = (
            None if config.control_channels is None else nn.Linear(config.num_rois, config.control_channels, bias=False)
        )
        if self.control_projection is not None:
            self.control_projection.init_scale = "rois"

    def forward(
        self, fmri_values: torch.Tensor, frame_mask: torch.Tensor, repetition_time: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames = fmri_values.shape[-1]
        hidden = self.projection(fmri_values.transpose(1, 2))
        seconds = torch.arange(frames, device=fmri_values.device, dtype=torch.float32) * repetition_time.unsqueeze(1)
        time_features = sinusoidal_time_embedding(seconds, hidden.shape[-1], self.config.time_embedding_max_period)
        hidden = (hidden + self.time_projection(time_features.to(hidden.dtype))) * frame_mask.unsqueeze(-1)
        path = fmri_values
        if self.control_projection is not None:  # linear, so it commutes with the (linear) spline
            path = self.control_projection(fmri_values.transpose(1, 2)).transpose(1, 2)
        control = spline_derivative(path, repetition_time, frame_mask, kind=self.config.spline)
        return hidden, control.transpose(1, 2)


class MnemoDynModel(MnemoDynPreTrainedModel):
    r"""
    The MnemoDyn backbone: a parcellated series → per-frame features and a pooled feature per scan. Usable as an
    R2T-Net backbone (`R2TNetConfig(backbone_config=MnemoDynConfig(...))`).

    Example:
        >>> import torch
        >>> from r2tnet_hf import MnemoDynConfig, MnemoDynModel
        >>> model = MnemoDynModel(MnemoDynConfig(num_rois=16, hidden_size=32, num_hidden_layers=2, control_channels=8))
        >>> out = model(torch.randn(2, 16, 40), repetition_time=torch.tensor([0.72, 2.0]))
        >>> out.pooler_output.shape
        torch.Size([2, 32])
    """

    def __init__(self, config: MnemoDynConfig):
        super().__init__(config)
        self.embeddings = MnemoDynEmbedding(config)
        self.layers = nn.ModuleList(MnemoDynLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def forward(
        self,
        fmri_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        repetition_time: torch.Tensor | float | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> FmriBackboneOutput | tuple:
        r"""
        Args:
            fmri_values (`torch.FloatTensor` of shape `(batch_size, num_rois, num_timepoints)`):
                The series, time last, as `FmriProcessor` returns it (z-scored per ROI).
            output_attentions (`bool`, *optional*): refused (there is no attention).
            attention_mask (`torch.LongTensor` of shape `(batch_size, num_timepoints)`, *optional*):
                1 for real frames, 0 for padding. Defaults to all ones.
            repetition_time (`torch.FloatTensor` of shape `(batch_size,)` or `float`):
                Seconds per frame. Required: the control path's time axis is in seconds.
            output_hidden_states (`bool`, *optional*):
                Return the features after the embedding and after every layer.

        Returns:
            [`FmriBackboneOutput`] with `last_hidden_state` `(batch_size, num_timepoints, hidden_size)` (one token per
            frame), `pooler_output` `(batch_size, hidden_size)` (mean over real frames) and `token_mask` (the frame
            mask).
        """
        if output_attentions:
            raise ValueError("MnemoDynModel has no attention: output_attentions is not supported")
        output_hidden_states = bool(
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        fmri_values, frame_mask, repetition_time = check_roi_inputs(
            fmri_values, attention_mask, repetition_time, self.config.num_rois
        )
        frames = fmri_values.shape[-1]
        dtype = self.embeddings.projection.weight.dtype
        values = fmri_values.to(dtype) * frame_mask.unsqueeze(1).to(dtype)
        values, padded_mask = pad_to_multiple(values, frame_mask, self.config.frame_multiple)
        lengths = frame_mask.sum(dim=1)
        hidden_states, control = self.embeddings(values, padded_mask, repetition_time)

        all_hidden_states = (hidden_states[:, :frames],) if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, control, padded_mask, lengths)
            if output_hidden_states:
                all_hidden_states += (hidden_states[:, :frames],)

        hidden_states = self.norm(hidden_states[:, :frames]) * frame_mask.unsqueeze(-1).to(dtype)
        output = FmriBackboneOutput(
            last_hidden_state=hidden_states,
            pooler_output=masked_mean(hidden_states, frame_mask),
            token_mask=frame_mask,
            hidden_states=all_hidden_states,
        )
        return output if return_dict else output.to_tuple()


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
    """JEPA predictor block: pre-norm wavelet operator and pre-norm MLP, both residual."""

    def __init__(self, config: MnemoDynConfig, width: int):
        super().__init__()
        self.wavelet_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.wavelet = MnemoDynWaveletOperator(config, channels=width)
        self.mlp_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), ACT2FN[config.hidden_act], nn.Linear(2 * width, width))

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        keep = frame_mask.unsqueeze(-1).to(hidden_states.dtype)
        hidden_states = hidden_states + self.wavelet(self.wavelet_norm(hidden_states), lengths) * keep
        return hidden_states + self.mlp(self.mlp_norm(hidden_states)) * keep


class MnemoDynJepaPredictor(nn.Module):
    """Context latents (+ which ROIs and frames were hidden) → predicted target latents, per frame."""

    def __init__(self, config: MnemoDynConfig):
        super().__init__()
        width = config.jepa_predictor_hidden_size
        self.config = config
        self.input = nn.Linear(config.hidden_size, width)
        self.hidden_rois = nn.Linear(config.num_rois, width)  # embeds the set of hidden ROIs of each frame
        self.blocks = nn.ModuleList(MnemoDynPredictorBlock(config, width) for _ in range(config.jepa_predictor_layers))
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.output = nn.Linear(width, config.hidden_size)

    def forward(self, context: torch.Tensor, hidden_positions: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        # context (batch, T, hidden); hidden_positions (batch, V, T) bool; T a multiple of 2**levels.
        states = self.input(context) + self.hidden_rois(hidden_positions.transpose(1, 2).to(context.dtype))
        lengths = frame_mask.sum(dim=1)
        for block in self.blocks:
            states = block(states, frame_mask, lengths)
        return self.output(self.norm(states))


class MnemoDynForPretraining(MnemoDynPreTrainedModel):
    r"""
    MnemoDyn with its pretraining objective, chosen by `config.objective`:

    * `"reconstruct"`: MSE + MAE of the reconstructed series on real frames, plus `consistency_weight` × the
      multi-resolution latent consistency loss (the latents of the scan, averaged over pairs of frames, against the
      latents of its half-rate version at TR × 2: the level-1 db2 approximation / √2; both layer-normed, MSE).
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
        if self.target_encoder is None:
            return
        m = self.momentum(progress)
        for target, context in zip(self.target_encoder.parameters(), self.mnemodyn.parameters()):
            target.mul_(m).add_(context.detach(), alpha=1.0 - m)

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
        padded = F.pad(frame_mask, (0, time_blocks * config.mask_time_block - frames), value=False)
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

    def forward(
        self,
        fmri_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        repetition_time: torch.Tensor | float | None = None,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        return_dict: bool | None = None,
    ) -> MnemoDynPretrainingOutput | tuple:
        r"""
        Args:
            fmri_values (`torch.FloatTensor` of shape `(batch_size, num_rois, num_timepoints)`): the series.
            attention_mask (`torch.LongTensor` of shape `(batch_size, num_timepoints)`, *optional*): 1 for real frames.
            repetition_time (`torch.FloatTensor` of shape `(batch_size,)` or `float`): seconds per frame.
            labels (`torch.FloatTensor` of shape `(batch_size, num_rois, num_timepoints)`, *optional*):
                The clean target series for `reconstruct`, `denoise` and `masked`; defaults to `fmri_values`.
            generator (`torch.Generator`, *optional*): the source of noise, masks and target blocks.
            seed (`int`, *optional*): a seed for a fresh generator (ignored when `generator` is given).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        fmri_values, frame_mask, repetition_time = check_roi_inputs(
            fmri_values, attention_mask, repetition_time, self.config.num_rois
        )
        if labels is not None and labels.shape != fmri_values.shape:
            raise FmriInputError.for_source(
                "labels", expected=f"shape {tuple(fmri_values.shape)} (as fmri_values)", found=f"{tuple(labels.shape)}"
            )
        if generator is None and seed is not None:
            generator = torch.Generator(device=fmri_values.device).manual_seed(seed)
        dtype = self.mnemodyn.embeddings.projection.weight.dtype
        fmri_values = fmri_values.to(dtype)
        target = (fmri_values if labels is None else labels.to(dtype)) * frame_mask.unsqueeze(1).to(dtype)
        objective = self.config.objective
        if objective == "jepa":
            output = self._jepa(fmri_values, frame_mask, repetition_time, generator)
        else:
            output = self._reconstruction(fmri_values, target, frame_mask, repetition_time, generator)
        return output if return_dict else output.to_tuple()

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
        consistency = None
        if objective == "reconstruct" and self.config.consistency_weight > 0:
            consistency = self._consistency(encoded, fmri_values, frame_mask, repetition_time)
            loss = loss + self.config.consistency_weight * consistency
        return MnemoDynPretrainingOutput(
            loss=loss,
            reconstruction=reconstruction,
            loss_mask=loss_mask,
            consistency_loss=consistency,
            last_hidden_state=encoded,
        )

    def _consistency(self, encoded, fmri_values, frame_mask, repetition_time):
        """Latents at full rate (averaged over pairs of frames) vs latents of the half-rate scan at TR × 2."""
        values, mask = pad_to_multiple(fmri_values * frame_mask.unsqueeze(1), frame_mask, 2)
        encoded = F.pad(encoded, (0, 0, 0, values.shape[-1] - encoded.shape[1]))
        half_values = wavedec(values, 1)[0] / math.sqrt(2.0)  # the level-1 approximation, back to signal scale
        half_mask = mask[:, 0::2] & mask[:, 1::2]
        if not bool(half_mask.any(dim=1).all()):  # a one-frame scan has no half-rate version
            return encoded.sum() * 0.0
        half = self.mnemodyn(half_values, half_mask, repetition_time * 2, return_dict=True).last_hidden_state
        pooled = 0.5 * (encoded[:, 0::2] + encoded[:, 1::2])
        hidden = encoded.shape[-1]
        difference = F.layer_norm(pooled, (hidden,)) - F.layer_norm(half, (hidden,))
        weights = half_mask.unsqueeze(-1).to(difference.dtype)
        return (difference.square() * weights).sum() / (weights.sum() * hidden).clamp_min(1.0)

    def _jepa(self, fmri_values, frame_mask, repetition_time, generator):
        hidden_positions, target_frames = self.jepa_target_blocks(frame_mask, generator)
        with torch.no_grad():
            self.target_encoder.eval()
            target = self.target_encoder(fmri_values, frame_mask, repetition_time, return_dict=True).last_hidden_state
            target = F.layer_norm(target, (target.shape[-1],))
        context_input = torch.where(hidden_positions, self.mask_value.view(1, -1, 1).to(fmri_values.dtype), fmri_values)
        context = self.mnemodyn(context_input, frame_mask, repetition_time, return_dict=True).last_hidden_state
        frames = fmri_values.shape[-1]
        padded_positions, padded_mask = pad_to_multiple(hidden_positions, frame_mask, self.config.frame_multiple)
        padded_context = F.pad(context, (0, 0, 0, padded_positions.shape[-1] - frames))
        predicted = self.predictor(padded_context, padded_positions, padded_mask)[:, :frames]
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
