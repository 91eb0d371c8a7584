"""ConnectomeTransformer: a transformer over ROI tokens, each carrying its row of the scan's functional connectivity.

A scan `(batch, V, T)` → the Pearson correlation between every pair of ROIs over the real frames (Fisher z, diagonal
zeroed) → V tokens, token i being a linear map of connectivity row i plus a learned embedding of ROI i → pre-norm
transformer blocks over the ROIs → every token reduced to `readout_size` features, concatenated in ROI order and
mapped to `hidden_size`.

Why connectivity tokens: what tells one person from another in fMRI is mostly second-order structure (which regions
co-fluctuate; Finn et al., 2015), and that structure is stable across rest and task while the time courses
themselves are not. A model over temporal patches must rediscover covariance from first-order tokens, and in our
experiments it fitted its training subjects without ever identifying new ones; connectivity tokens start from the
information that identifies people and let the layers learn what to keep across states. Correlations are computed
over the real frames only, so masked frames never change the output, and they do not depend on the TR.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.utils.generic import can_return_tuple

from ..common import (
    FmriBackboneOutput,
    FmriTransformerPreTrainedModel,
    forward_docstring,
    require_real_frames,
    run_layers,
    transformer_layers,
)
from .configuration_connectome_transformer import ConnectomeTransformerConfig

# Correlations are clipped to ±CLIP before the Fisher z-transform (|z| ≤ 3.8), so near-duplicate ROIs stay finite.
CLIP = 0.999
MIN_FRAMES = 3


def masked_correlation(fmri_values: torch.Tensor, frame_mask: torch.Tensor, fisher_z: bool = True) -> torch.Tensor:
    """Pearson correlation between the ROIs of each scan over its real frames, in float32 (also under autocast).

    Args:
        fmri_values (`torch.FloatTensor` of shape `(batch_size, num_rois, num_timepoints)`): the series.
        frame_mask (`torch.BoolTensor` of shape `(batch_size, num_timepoints)`): `True` for real frames.
        fisher_z (`bool`): return arctanh of the (clipped) correlations.

    Returns:
        `torch.FloatTensor` of shape `(batch_size, num_rois, num_rois)` with a zero diagonal. A constant ROI (zero
        variance over the real frames) has zero correlation with every other ROI.
    """
    # float32 even under mixed precision: autocast would run the product in bf16/fp16, whose 8-10 bit mantissas blur
    # correlations that differ between people in the second decimal
    with torch.autocast(device_type=fmri_values.device.type, enabled=False):
        weights = frame_mask.to(torch.float32).unsqueeze(1)
        values = fmri_values.float() * weights
        mean = values.sum(-1, keepdim=True) / weights.sum(-1, keepdim=True).clamp_min(1.0)
        centred = (values - mean) * weights  # masked frames are zero again after centring
        unit = centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        correlation = unit @ unit.transpose(-1, -2)
        if fisher_z:
            correlation = torch.atanh(correlation.clamp(-CLIP, CLIP))
        eye = torch.eye(correlation.shape[-1], dtype=torch.bool, device=correlation.device)
        return correlation.masked_fill(eye, 0.0)


class ConnectomeTransformerEmbeddings(nn.Module):
    """Connectivity rows → ROI tokens `(batch, V, embed_dim)`: a shared linear map plus a learned embedding per ROI,
    then a layer norm, so the tokens start at unit scale whatever the spread of the correlations."""

    def __init__(self, config: ConnectomeTransformerConfig):
        super().__init__()
        self.projection = nn.Linear(config.num_rois, config.embed_dim)
        self.roi_embedding = nn.Parameter(torch.zeros(config.num_rois, config.embed_dim))
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, connectivity: torch.Tensor) -> torch.Tensor:
        tokens = self.projection(connectivity.to(self.projection.weight.dtype)) + self.roi_embedding
        return self.dropout(self.norm(tokens))


class ConnectomeTransformerReadout(nn.Module):
    """ROI tokens → `readout_size` features each → concatenated in ROI order → `hidden_size`."""

    def __init__(self, config: ConnectomeTransformerConfig):
        super().__init__()
        self.reduce = nn.Linear(config.embed_dim, config.readout_size)
        self.output = nn.Linear(config.num_rois * config.readout_size, config.hidden_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.output(self.reduce(tokens).flatten(1))


class ConnectomeTransformerPreTrainedModel(FmriTransformerPreTrainedModel):
    config: ConnectomeTransformerConfig
    config_class = ConnectomeTransformerConfig
    base_model_prefix = "connectome_transformer"


class ConnectomeTransformerModel(ConnectomeTransformerPreTrainedModel):
    r"""
    The ConnectomeTransformer backbone: a parcellated series → ROI token features and a pooled feature per scan.

    Example:
        >>> import torch
        >>> from r2tnet_hf import ConnectomeTransformerConfig, ConnectomeTransformerModel
        >>> config = ConnectomeTransformerConfig(num_rois=16, embed_dim=32, num_hidden_layers=2, num_attention_heads=4,
        ...                                      intermediate_size=64, readout_size=4, hidden_size=48)
        >>> ConnectomeTransformerModel(config)(torch.randn(2, 16, 40), repetition_time=0.72).pooler_output.shape
        torch.Size([2, 48])
    """

    def __init__(self, config: ConnectomeTransformerConfig):
        super().__init__(config)
        self.embeddings = ConnectomeTransformerEmbeddings(config)
        self.layers = transformer_layers(config, hidden_size=config.embed_dim)
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.readout = ConnectomeTransformerReadout(config)
        self.post_init()

    @can_return_tuple
    @forward_docstring(
        attention_mask="""attention_mask (`torch.LongTensor` of shape `(batch_size, num_timepoints)`, *optional*):
            1 for real frames, 0 for padding; at least 3 real frames per scan. Defaults to all ones."""
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
            [`FmriBackboneOutput`]: `last_hidden_state` `(batch_size, num_rois, embed_dim)` (ROI tokens in ROI
            order), `pooler_output` `(batch_size, hidden_size)`, `token_mask` all `True`. Correlations do not use the
            TR.
        """
        output_attentions, output_hidden_states = self.output_switches(output_attentions, output_hidden_states)
        fmri_values, frame_mask, _ = self.check_inputs(fmri_values, attention_mask, repetition_time)
        require_real_frames(frame_mask, MIN_FRAMES, "connectivity")
        connectivity = masked_correlation(fmri_values, frame_mask, self.config.fisher_z)
        hidden_states, all_hidden_states, all_attentions = run_layers(  # every ROI token is real: no mask
            self.layers, self.embeddings(connectivity), None, output_attentions, output_hidden_states
        )
        hidden_states = self.norm(hidden_states)
        return FmriBackboneOutput(
            last_hidden_state=hidden_states,
            pooler_output=self.readout(hidden_states),
            token_mask=torch.ones(hidden_states.shape[:2], dtype=torch.bool, device=hidden_states.device),
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


__all__ = ["ConnectomeTransformerModel", "ConnectomeTransformerPreTrainedModel", "masked_correlation"]
