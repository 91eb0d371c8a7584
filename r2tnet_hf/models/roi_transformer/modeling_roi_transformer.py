"""RoiTransformer: a pre-norm transformer over temporal patches of a parcellated fMRI series.

Each token is a patch of `patch_size` frames across all ROIs. Token times are in seconds (patch centre × TR), so scans
acquired at different TRs line up. Padded frames are zeroed and their tokens are masked out of attention (as keys) and
out of pooling, so padding never changes the output for the real frames.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.generic import can_return_tuple

from ..common import (
    FmriBackboneOutput,
    FmriMLP,
    FmriPreTrainedModel,
    eager_attention_forward,
    forward_docstring,
    init_norm,
    init_transformer_weights,
    masked_mean,
    masked_mean_std,
    pad_to_multiple,
    run_layers,
    sinusoidal_time_embedding,
)
from .configuration_roi_transformer import RoiTransformerConfig


class RoiTransformerPatchEmbedding(nn.Module):
    """Temporal patches → tokens, with the dense or the factorised (spatial basis) input projection."""

    def __init__(self, config: RoiTransformerConfig):
        super().__init__()
        self.config = config
        if config.spatial_rank is None:
            self.spatial_basis = None
            patch_features = config.num_rois * config.patch_size
        else:
            self.spatial_basis = nn.Parameter(torch.empty(config.num_rois, config.spatial_rank))
            patch_features = config.spatial_rank * config.patch_size
        self.projection = nn.Linear(patch_features, config.hidden_size)
        self.time_projection = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, fmri_values: torch.Tensor, frame_mask: torch.Tensor, repetition_time: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the tokens (content + time), their mask, and the content projection alone (for statistics)."""
        patch = self.config.patch_size
        values = fmri_values
        if self.spatial_basis is not None:  # a linear map of each frame, with no bias: masking after it is the same
            values = torch.einsum("bvt,vr->brt", values, self.spatial_basis.to(values.dtype))
        values = pad_to_multiple(values, (-1,), (patch,))
        frame_mask = pad_to_multiple(frame_mask, (-1,), (patch,), value=False)
        batch, channels, frames = values.shape
        num_tokens = frames // patch
        # patches (batch, tokens, channels × patch): the transpose copies; masked frames are zeroed in that copy
        # (exact zeros, whatever finite values they held), so that the series is never copied for the mask
        patches = values.reshape(batch, channels, num_tokens, patch).transpose(1, 2)
        patches = patches.clone(memory_format=torch.contiguous_format)  # never a view of the input: written in place
        patches = patches.masked_fill_(~frame_mask.view(batch, num_tokens, 1, patch), 0.0)
        tokens = self.projection(patches.reshape(batch, num_tokens, -1))

        token_mask = frame_mask.reshape(batch, num_tokens, patch).any(dim=-1)
        centre_frame = torch.arange(num_tokens, device=tokens.device, dtype=torch.float32) * patch + (patch - 1) / 2
        seconds = centre_frame.unsqueeze(0) * repetition_time.unsqueeze(1)
        time_features = sinusoidal_time_embedding(seconds, tokens.shape[-1], self.config.time_embedding_max_period)
        content = tokens
        tokens = tokens + self.time_projection(time_features.to(tokens.dtype))
        return self.dropout(tokens), token_mask, content


class RoiTransformerAttention(nn.Module):
    """Multi-head self-attention with a key-padding mask, through the attention interface (`"sdpa"` or `"eager"`)."""

    def __init__(self, config: RoiTransformerConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.is_causal = False  # read by transformers' SDPA function, which otherwise assumes a decoder
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob

    def forward(
        self, hidden_states: torch.Tensor, key_mask: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the attended tokens and, with `output_attentions` (eager for that call), the probabilities."""
        batch, tokens, hidden = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        allowed = key_mask[:, None, None, :]  # (batch, 1, 1, tokens): every query may attend to the real tokens
        attention_interface = (
            eager_attention_forward
            if output_attentions
            else ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        )
        context, weights = attention_interface(
            self, query, key, value, allowed, dropout=self.dropout_prob if self.training else 0.0
        )
        return self.output(context.reshape(batch, tokens, hidden)), weights


class RoiTransformerLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + attn(LN(x)), then x + mlp(LN(x)). Returns the new tokens, and with `output_attentions`
    also the attention probabilities."""

    def __init__(self, config: RoiTransformerConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = RoiTransformerAttention(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FmriMLP(config.hidden_size, config.intermediate_size, config.hidden_act, config.hidden_dropout_prob)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # The residual branches' output projections, initialised for depth (see `_init_weights`).
        self.attention.output.depth_scaled = self.mlp.fc2.depth_scaled = True

    def forward(
        self, hidden_states: torch.Tensor, key_mask: torch.Tensor, output_attentions: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.attention(self.attention_norm(hidden_states), key_mask, output_attentions)
        hidden_states = hidden_states + self.dropout(attended)
        hidden_states = hidden_states + self.mlp(self.mlp_norm(hidden_states))
        return (hidden_states, weights) if output_attentions else hidden_states


class RoiTransformerPreTrainedModel(FmriPreTrainedModel):
    config: RoiTransformerConfig
    config_class = RoiTransformerConfig
    base_model_prefix = "roi_transformer"
    _supports_sdpa = True
    _no_split_modules = ["RoiTransformerLayer"]

    def _init_weights(self, module: nn.Module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "depth_scaled", False):
                # Residual branches scaled for depth (GPT-2 style), so deep stacks start near the identity.
                std = std / math.sqrt(2 * self.config.num_hidden_layers)
            init_transformer_weights(module, std)
        elif isinstance(module, RoiTransformerPatchEmbedding) and module.spatial_basis is not None:
            # Unit-variance components for z-scored input, whatever the number of ROIs.
            init.normal_(module.spatial_basis, std=module.config.num_rois**-0.5)
        else:
            init_norm(module)


class RoiTransformerModel(RoiTransformerPreTrainedModel):
    r"""
    The RoiTransformer backbone: parcellated or grayordinate series → token features and a pooled feature per scan.

    Example:
        >>> import torch
        >>> from r2tnet_hf import RoiTransformerConfig, RoiTransformerModel
        >>> model = RoiTransformerModel(RoiTransformerConfig(num_rois=16, hidden_size=32, num_hidden_layers=2,
        ...                                                   num_attention_heads=4, intermediate_size=64))
        >>> out = model(torch.randn(2, 16, 40), repetition_time=torch.tensor([0.72, 2.0]))
        >>> out.pooler_output.shape
        torch.Size([2, 32])
    """

    def __init__(self, config: RoiTransformerConfig):
        super().__init__(config)
        self.embeddings = RoiTransformerPatchEmbedding(config)
        self.layers = nn.ModuleList(RoiTransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pool_projection = (
            nn.Linear(2 * config.hidden_size, config.hidden_size) if config.pooling == "mean_std" else None
        )
        self.post_init()

    @can_return_tuple
    @forward_docstring()
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
            [`FmriBackboneOutput`]: `last_hidden_state` `(batch_size, num_tokens, hidden_size)`, one token per patch
            of `patch_size` frames, `token_mask` the tokens holding a real frame, `pooler_output` as `config.pooling`.
        """
        output_attentions, output_hidden_states = self.output_switches(output_attentions, output_hidden_states)
        fmri_values, frame_mask, repetition_time = self.check_inputs(fmri_values, attention_mask, repetition_time)
        fmri_values = fmri_values.to(self.embeddings.projection.weight.dtype)
        hidden_states, token_mask, content = self.embeddings(fmri_values, frame_mask, repetition_time)
        hidden_states, all_hidden_states, all_attentions = run_layers(
            self.layers, hidden_states, token_mask, output_attentions, output_hidden_states
        )
        hidden_states = self.norm(hidden_states)
        if self.pool_projection is None:
            pooled = masked_mean(hidden_states, token_mask)
        else:
            # mean of the output tokens, and the standard deviation over time of the input projections: how strongly
            # each learned spatio-temporal pattern fluctuates, before layer norms divide that scale away
            spread = masked_mean_std(content, token_mask)[..., content.shape[-1] :]
            pooled = self.pool_projection(torch.cat([masked_mean(hidden_states, token_mask), spread], dim=-1))
        return FmriBackboneOutput(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            token_mask=token_mask,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


__all__ = ["RoiTransformerModel", "RoiTransformerPreTrainedModel"]
