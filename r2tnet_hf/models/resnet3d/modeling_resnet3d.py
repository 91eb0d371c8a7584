"""ResNet3D: a 3-D ResNet (R3D-18 / ResNet3D-34 layouts) applied per frame, with masked temporal pooling.

**Design: per-frame 3-D convolution + temporal pooling**, not (2+1)-D. An fMRI frame is already a 3-D image (space),
so the 3-D kernels act on (H, W, D) of each frame; time is handled after the CNN by a masked mean over the real
frames. Only real frames (`attention_mask = 1`) go through the CNN: padded frames cost nothing and cannot leak into
the batch-norm statistics, so padding never changes the output. The per-frame features are the `last_hidden_state`
`(batch, T, hidden)`. The pool ignores frame order (and therefore the TR); use Swin4D, Vit4D or CNN+GRU when temporal
dynamics matter.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils.generic import can_return_tuple

from ..common import FmriBackboneOutput, FmriConvPreTrainedModel, forward_docstring, masked_mean
from .configuration_resnet3d import ResNet3DConfig


class ResNet3DBasicBlock(nn.Module):
    """conv3³ → BN → ReLU → conv3³ → BN, plus the (projected when the shape changes) shortcut, → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm3d(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm3d(out_channels)
        self.shortcut = (
            nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm3d(out_channels)
            )
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(hidden_states)
        hidden_states = torch.relu(self.norm1(self.conv1(hidden_states)))
        return torch.relu(self.norm2(self.conv2(hidden_states)) + residual)


class ResNet3DStage(GradientCheckpointingLayer):
    def __init__(self, in_channels: int, out_channels: int, depth: int, stride: int):
        super().__init__()
        self.blocks = nn.Sequential(
            *(
                ResNet3DBasicBlock(
                    in_channels if index == 0 else out_channels, out_channels, stride if index == 0 else 1
                )
                for index in range(depth)
            )
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.blocks(hidden_states)


class ResNet3DPreTrainedModel(FmriConvPreTrainedModel):
    config: ResNet3DConfig
    config_class = ResNet3DConfig
    base_model_prefix = "resnet3d"
    _no_split_modules = ["ResNet3DStage"]


class ResNet3DModel(ResNet3DPreTrainedModel):
    r"""
    The ResNet3D backbone: each real frame → 3-D ResNet → global average pool; the scan → masked mean over frames.

    Example:
        >>> import torch
        >>> from r2tnet_hf import ResNet3DConfig, ResNet3DModel
        >>> config = ResNet3DConfig(image_size=[8, 8, 8], num_frames=6, depths=[1, 1], embedding_size=8,
        ...                         hidden_sizes=[16, 32])
        >>> ResNet3DModel(config)(torch.randn(2, 1, 8, 8, 8, 6), repetition_time=2.0).pooler_output.shape
        torch.Size([2, 32])
    """

    def __init__(self, config: ResNet3DConfig):
        super().__init__(config)
        self.stem = nn.Sequential(
            nn.Conv3d(config.num_channels, config.embedding_size, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm3d(config.embedding_size),
            nn.ReLU(),
            nn.MaxPool3d(3, stride=2, padding=1),
        )
        channels = [config.embedding_size, *config.hidden_sizes]
        self.stages = nn.ModuleList(
            ResNet3DStage(channels[index], channels[index + 1], depth, 1 if index == 0 else 2)
            for index, depth in enumerate(config.depths)
        )
        self.post_init()

    @can_return_tuple
    @forward_docstring(
        output_hidden_states="""output_hidden_states (`bool`, *optional*):
            Return the per-frame features after the stem and after every stage, globally average-pooled,
            `(batch_size, num_timepoints, channels)`."""
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
            [`FmriBackboneOutput`]: `last_hidden_state` `(batch_size, num_timepoints, hidden_size)` per-frame features
            (zeros at padded frames), `token_mask` the frame mask, `pooler_output` their masked mean (which ignores
            frame order, and so the TR).
        """
        _, output_hidden_states = self.output_switches(output_attentions, output_hidden_states)
        fmri_values, frame_mask, _ = self.check_inputs(fmri_values, attention_mask, repetition_time)
        fmri_values = fmri_values.to(self.stem[0].weight.dtype)
        frames = fmri_values.permute(0, 5, 1, 2, 3, 4)[frame_mask]  # (real frames, C, H, W, D)

        def per_frame(features: torch.Tensor) -> torch.Tensor:
            pooled = features.mean(dim=(2, 3, 4))
            scattered = pooled.new_zeros(*frame_mask.shape, pooled.shape[-1])
            scattered[frame_mask] = pooled
            return scattered

        hidden_states = self.stem(frames)
        all_hidden_states = (per_frame(hidden_states),) if output_hidden_states else None
        for stage in self.stages:
            hidden_states = stage(hidden_states)
            if output_hidden_states:
                all_hidden_states += (per_frame(hidden_states),)
        frame_features = per_frame(hidden_states)
        return FmriBackboneOutput(
            last_hidden_state=frame_features,
            pooler_output=masked_mean(frame_features, frame_mask),
            token_mask=frame_mask,
            hidden_states=all_hidden_states,
        )


__all__ = ["ResNet3DModel", "ResNet3DPreTrainedModel"]
