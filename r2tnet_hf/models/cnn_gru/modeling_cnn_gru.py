"""CNN+GRU: a small 3-D CNN per frame, then a GRU over the real frames.

Only the real frames (`attention_mask = 1`) go through the CNN. Their features, in time order, are packed per scan
(`pack_padded_sequence`), so the GRU never steps over padding, wherever the padded frames were. Each GRU input is the
frame's CNN features plus the scan's TR in seconds (the step size). The pooled feature is the last GRU layer's state
after the last real frame (`pooling="last"`, default) or the masked mean of its outputs (`pooling="mean"`).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils.generic import can_return_tuple

from ..common import FmriBackboneOutput, FmriConvPreTrainedModel, forward_docstring, masked_mean
from .configuration_cnn_gru import CnnGruConfig


class CnnGruFrameEncoder(GradientCheckpointingLayer):
    """Frames `(N, C, H, W, D)` → features `(N, conv_channels[-1])`: strided conv blocks, then global average pool."""

    def __init__(self, config: CnnGruConfig):
        super().__init__()
        layers: list[nn.Module] = []
        channels = [config.num_channels, *config.conv_channels]
        for size_in, size_out in itertools.pairwise(channels):
            layers += [
                nn.Conv3d(size_in, size_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm3d(size_out),
                nn.ReLU(),
            ]
        self.layers = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.layers(frames).mean(dim=(2, 3, 4))


class CnnGruPreTrainedModel(FmriConvPreTrainedModel):
    config: CnnGruConfig
    config_class = CnnGruConfig
    base_model_prefix = "cnn_gru"
    _no_split_modules = ["CnnGruFrameEncoder"]


class CnnGruModel(CnnGruPreTrainedModel):
    r"""
    The CNN+GRU backbone: each real frame → 3-D CNN; the frames in order → GRU; the scan → last state or mean.

    Example:
        >>> import torch
        >>> from r2tnet_hf import CnnGruConfig, CnnGruModel
        >>> config = CnnGruConfig(image_size=[8, 8, 8], num_frames=6, conv_channels=[8, 16], hidden_size=32)
        >>> CnnGruModel(config)(torch.randn(2, 1, 8, 8, 8, 6), repetition_time=2.0).pooler_output.shape
        torch.Size([2, 32])
    """

    def __init__(self, config: CnnGruConfig):
        super().__init__(config)
        self.frame_encoder = CnnGruFrameEncoder(config)
        self.gru = nn.GRU(
            config.conv_channels[-1] + 1,
            config.hidden_size,
            num_layers=config.num_hidden_layers,
            batch_first=True,
            dropout=config.hidden_dropout_prob if config.num_hidden_layers > 1 else 0.0,
        )
        self.post_init()

    @can_return_tuple
    @forward_docstring(
        repetition_time="""repetition_time (`torch.FloatTensor` of shape `(batch_size,)` or `float`):
            Seconds per frame, fed to the GRU with every frame. Required.""",
        output_hidden_states="""output_hidden_states (`bool`, *optional*):
            Return the per-frame CNN features `(batch_size, num_timepoints, conv_channels[-1])`.""",
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
            [`FmriBackboneOutput`]: `last_hidden_state` `(batch_size, num_timepoints, hidden_size)` the GRU output at
            each real frame (zeros at padded frames), `token_mask` the frame mask, `pooler_output` as `config.pooling`.
        """
        _, output_hidden_states = self.output_switches(output_attentions, output_hidden_states)
        fmri_values, frame_mask, repetition_time = self.check_inputs(fmri_values, attention_mask, repetition_time)
        dtype = self.gru.weight_ih_l0.dtype
        frames = fmri_values.to(dtype).permute(0, 5, 1, 2, 3, 4)[frame_mask]  # (real frames, C, H, W, D)
        features = self.frame_encoder(frames)
        batch, num_frames = frame_mask.shape
        lengths = frame_mask.sum(dim=1)
        # Real frames of each scan, in order, moved to the front: row b holds its lengths[b] frames, then zeros.
        packed_positions = torch.arange(num_frames, device=frame_mask.device) < lengths.unsqueeze(1)
        steps = features.new_zeros(batch, num_frames, features.shape[-1])
        steps[packed_positions] = features
        tr = repetition_time.to(dtype)[:, None, None].expand(batch, num_frames, 1)
        packed = pack_padded_sequence(
            torch.cat([steps, tr], dim=-1), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, last_state = self.gru(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=num_frames)
        frame_outputs = outputs.new_zeros(batch, num_frames, outputs.shape[-1])
        frame_outputs[frame_mask] = outputs[packed_positions]
        pooled = last_state[-1] if self.config.pooling == "last" else masked_mean(frame_outputs, frame_mask)
        all_hidden_states = None
        if output_hidden_states:
            frame_features = features.new_zeros(batch, num_frames, features.shape[-1])
            frame_features[frame_mask] = features
            all_hidden_states = (frame_features,)
        return FmriBackboneOutput(
            last_hidden_state=frame_outputs,
            pooler_output=pooled,
            token_mask=frame_mask,
            hidden_states=all_hidden_states,
        )


__all__ = ["CnnGruModel", "CnnGruPreTrainedModel"]
