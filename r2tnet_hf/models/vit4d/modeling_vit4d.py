"""Vit4D: a ViT over 4-D tubelets of fMRI volumes.

Input `(batch, C, H, W, D, T)` → tubelets of `patch_size` (zero-padded at the end of each axis up to the next
multiple) → linear embedding + factorised positions (a learned table over the spatial tubelet grid, plus a learned
projection of sinusoidal features of the tubelet time in seconds) → pre-norm transformer blocks (SDPA) → masked mean
or CLS pool. Tubelets made only of masked frames are never keys for real tokens and are left out of the mean.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.utils.generic import can_return_tuple

from ..common import (
    FmriBackboneOutput,
    FmriTransformerPreTrainedModel,
    forward_docstring,
    masked_mean,
    pad_to_multiple,
    run_layers,
    self_attention_mask,
    sinusoidal_time_embedding,
    transformer_layers,
)
from .configuration_vit4d import Vit4DConfig


class Vit4DEmbeddings(nn.Module):
    """Tubelets → tokens `(batch, spatial · temporal tubelets [+ CLS], hidden)` with the token mask."""

    def __init__(self, config: Vit4DConfig):
        super().__init__()
        self.config = config
        self.projection = nn.Linear(config.num_channels * math.prod(config.patch_size), config.hidden_size)
        self.space_position = nn.Parameter(torch.zeros(math.prod(config.spatial_grid), config.hidden_size))
        self.time_projection = nn.Linear(config.hidden_size, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.pooling == "cls" else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, fmri_values, frame_mask, repetition_time) -> tuple[torch.Tensor, torch.Tensor]:
        ph, pw, pd, pt = self.config.patch_size
        values = fmri_values * frame_mask[:, None, None, None, None, :].to(fmri_values.dtype)
        values = pad_to_multiple(values, (2, 3, 4, 5), self.config.patch_size)
        frame_mask = pad_to_multiple(frame_mask, (1,), (pt,), value=False)
        batch, channels, height, width, depth, frames = values.shape
        grid = (height // ph, width // pw, depth // pd, frames // pt)
        tubelets = values.reshape(batch, channels, grid[0], ph, grid[1], pw, grid[2], pd, grid[3], pt)
        # Token order: time-major, then space, so that a frame's tubelets are contiguous.
        tubelets = tubelets.permute(0, 8, 2, 4, 6, 1, 3, 5, 7, 9).reshape(batch, grid[3], math.prod(grid[:3]), -1)
        tokens = self.projection(tubelets) + self.space_position
        centre_frame = torch.arange(grid[3], device=values.device, dtype=torch.float32) * pt + (pt - 1) / 2
        seconds = centre_frame.unsqueeze(0) * repetition_time.unsqueeze(1)
        time = sinusoidal_time_embedding(seconds, self.config.hidden_size, self.config.time_embedding_max_period)
        tokens = (tokens + self.time_projection(time.to(tokens.dtype)).unsqueeze(2)).flatten(1, 2)
        token_mask = frame_mask.view(batch, grid[3], pt).any(-1).repeat_interleave(math.prod(grid[:3]), dim=1)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
            token_mask = torch.cat([token_mask.new_ones(batch, 1), token_mask], dim=1)
        return self.dropout(tokens), token_mask


class Vit4DPreTrainedModel(FmriTransformerPreTrainedModel):
    config: Vit4DConfig
    config_class = Vit4DConfig
    base_model_prefix = "vit4d"


class Vit4DModel(Vit4DPreTrainedModel):
    r"""
    The Vit4D backbone: fMRI volumes → tubelet token features and a pooled feature per scan.

    Example:
        >>> import torch
        >>> from r2tnet_hf import Vit4DConfig, Vit4DModel
        >>> config = Vit4DConfig(image_size=[8, 8, 8], num_frames=6, patch_size=[4, 4, 4, 2], hidden_size=32,
        ...                      num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
        >>> Vit4DModel(config)(torch.randn(2, 1, 8, 8, 8, 6), repetition_time=2.0).pooler_output.shape
        torch.Size([2, 32])
    """

    def __init__(self, config: Vit4DConfig):
        super().__init__(config)
        self.embeddings = Vit4DEmbeddings(config)
        self.layers = transformer_layers(config)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    @can_return_tuple
    @forward_docstring(
        fmri_values="""fmri_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width, depth, num_timepoints)`):
            The volumes, time last; (H, W, D) must equal `config.image_size`, any number of frames."""
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
            [`FmriBackboneOutput`]: tokens ordered (CLS,) then time-major over the tubelet grid.
        """
        output_attentions, output_hidden_states = self.output_switches(output_attentions, output_hidden_states)
        fmri_values, frame_mask, repetition_time = self.check_inputs(
            fmri_values, attention_mask, repetition_time, self.config.image_size
        )
        fmri_values = fmri_values.to(self.embeddings.projection.weight.dtype)
        hidden_states, token_mask = self.embeddings(fmri_values, frame_mask, repetition_time)
        hidden_states, all_hidden_states, all_attentions = run_layers(
            self.layers, hidden_states, self_attention_mask(token_mask), output_attentions, output_hidden_states
        )
        hidden_states = self.norm(hidden_states)
        pooled = hidden_states[:, 0] if self.config.pooling == "cls" else masked_mean(hidden_states, token_mask)
        return FmriBackboneOutput(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            token_mask=token_mask,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


__all__ = ["Vit4DModel", "Vit4DPreTrainedModel"]
