"""PerceiverFmri: Perceiver IO over ROI, grayordinate or voxel tokens, with memory linear in the number of inputs.

**Tokens.** ROI input `(batch, V, T)`: one token per (ROI, time patch), its `time_patch_size` values; position = a
learned per-ROI embedding (V × `roi_embedding_size`, projected to `hidden_size`). Volume input `(batch, C, H, W, D, T)`:
one token per (spatial patch, time patch), its C·patch³·frames values (zero-padded at the end of each axis up to the
next multiple); position = a learned projection of sinusoidal features of the patch centre in voxels. Both add a
learned projection of sinusoidal features of the token time in seconds. Tokens of masked frames only are masked.

**Encoder.** `num_latents` learned latents cross-attend over all tokens once, then `num_hidden_layers` latent
self-attention blocks follow. The cross-attention walks over the tokens in chunks of `input_chunk_size`, embedding
each chunk on the fly and merging chunks with an online softmax (running max and sum), so nothing of size
`V × V` or `N × all tokens` is ever held at once in a forward pass: memory is linear in the number of inputs.
The pooled feature is the mean of the latents.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils.generic import can_return_tuple

from ..common import (
    FmriBackboneOutput,
    FmriMLP,
    FmriTransformerPreTrainedModel,
    forward_docstring,
    init_truncated,
    pad_to_multiple,
    run_layers,
    sinusoidal_time_embedding,
    transformer_layers,
)
from .configuration_perceiver import PerceiverFmriConfig

POSITION_FEATURES = 32  # sinusoidal features per axis (space of volumes, time)
SPACE_MAX_PERIOD = 1000.0  # voxels


class PerceiverFmriCrossAttention(GradientCheckpointingLayer):
    """Latents ← chunked cross-attention over input tokens (embedded chunk by chunk), then an MLP; pre-norm."""

    def __init__(self, config: PerceiverFmriConfig):
        super().__init__()
        hidden = config.hidden_size
        self.chunk_size = config.input_chunk_size
        self.num_heads = config.num_cross_attention_heads
        self.head_dim = hidden // self.num_heads
        space_features = config.roi_embedding_size if config.input_type == "roi" else 3 * POSITION_FEATURES
        self.value_projection = nn.Linear(config.token_size, hidden)
        self.space_projection = nn.Linear(space_features, hidden)
        self.time_projection = nn.Linear(POSITION_FEATURES, hidden)
        self.token_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.latent_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.query = nn.Linear(hidden, hidden, bias=config.qkv_bias)
        self.key_value = nn.Linear(hidden, 2 * hidden, bias=config.qkv_bias)
        self.output = nn.Linear(hidden, hidden)
        self.mlp_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.mlp = FmriMLP(hidden, config.intermediate_size, config.hidden_act, config.hidden_dropout_prob)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def embed(self, values, space_table, time_features, start: int, end: int) -> torch.Tensor:
        """Tokens `start:end` (flat index = space unit × time patches + time patch) → `(batch, end - start, hidden)`."""
        num_patches = time_features.shape[1]
        index = torch.arange(start, end, device=values.device)
        space = self.space_projection(space_table[index // num_patches])
        return self.value_projection(values[:, start:end]) + space + time_features[:, index % num_patches]

    def forward(
        self, latents: torch.Tensor, values: torch.Tensor, token_mask: torch.Tensor, space_table: torch.Tensor, seconds
    ) -> torch.Tensor:
        """`latents` `(batch, N, hidden)`; `values` `(batch, tokens, token_size)` and `token_mask` `(batch, tokens)`
        flat over (space unit, time patch); `space_table` `(space units, features)`; `seconds` `(batch, patches)`."""
        batch, num_latents, hidden = latents.shape
        time_features = self.time_projection(
            sinusoidal_time_embedding(seconds, POSITION_FEATURES, 10000.0).to(latents.dtype)
        )
        query = self.query(self.latent_norm(latents)).view(batch, num_latents, self.num_heads, self.head_dim)
        query = query.transpose(1, 2) / math.sqrt(self.head_dim)
        running_max = query.new_full((batch, self.num_heads, num_latents, 1), torch.finfo(query.dtype).min)
        running_sum = query.new_zeros(batch, self.num_heads, num_latents, 1)
        accumulated = query.new_zeros(batch, self.num_heads, num_latents, self.head_dim)
        for start in range(0, values.shape[1], self.chunk_size):
            end = min(start + self.chunk_size, values.shape[1])
            tokens = self.token_norm(self.embed(values, space_table, time_features, start, end))
            key, value = self.key_value(tokens).view(batch, end - start, 2, self.num_heads, self.head_dim).unbind(2)
            scores = query @ key.permute(0, 2, 3, 1)  # (batch, heads, N, chunk)
            allowed = token_mask[:, None, None, start:end]
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
            new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
            weights = torch.exp(scores - new_max) * allowed.to(scores.dtype)
            rescale = torch.exp(running_max - new_max)
            running_sum = running_sum * rescale + weights.sum(dim=-1, keepdim=True)
            accumulated = accumulated * rescale + weights @ value.transpose(1, 2)
            running_max = new_max
        attended = (accumulated / running_sum).transpose(1, 2).reshape(batch, num_latents, hidden)
        latents = latents + self.dropout(self.output(attended))
        return latents + self.mlp(self.mlp_norm(latents))


class PerceiverFmriPreTrainedModel(FmriTransformerPreTrainedModel):
    config: PerceiverFmriConfig
    config_class = PerceiverFmriConfig
    base_model_prefix = "perceiver_fmri"
    _no_split_modules = ["PerceiverFmriCrossAttention", "FmriTransformerLayer"]

    def _init_weights(self, module: nn.Module):
        if isinstance(module, PerceiverFmriModel):  # the latents truncated normal, the ROI table unit normal
            init_truncated(module.latents, self.config.initializer_range)
            if module.roi_embedding is not None:
                init.normal_(module.roi_embedding, std=1.0)
        else:
            super()._init_weights(module)


class PerceiverFmriModel(PerceiverFmriPreTrainedModel):
    r"""
    The PerceiverFmri backbone: ROI/grayordinate series or volumes → latent features and a pooled feature per scan.

    Example:
        >>> import torch
        >>> from r2tnet_hf import PerceiverFmriConfig, PerceiverFmriModel
        >>> config = PerceiverFmriConfig(num_rois=16, num_latents=8, hidden_size=32, num_hidden_layers=2,
        ...                              num_attention_heads=4, intermediate_size=64)
        >>> PerceiverFmriModel(config)(torch.randn(2, 16, 40), repetition_time=0.72).pooler_output.shape
        torch.Size([2, 32])
    """

    def __init__(self, config: PerceiverFmriConfig):
        super().__init__(config)
        self.latents = nn.Parameter(torch.zeros(config.num_latents, config.hidden_size))
        self.roi_embedding = (
            nn.Parameter(torch.zeros(config.num_rois, config.roi_embedding_size))
            if config.input_type == "roi"
            else None
        )
        self.cross_attention = PerceiverFmriCrossAttention(config)
        self.layers = transformer_layers(config)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def tokenize(self, fmri_values, frame_mask, repetition_time):
        """Input → flat token values `(batch, tokens, token_size)`, token mask, space table and patch times."""
        config = self.config
        patch = config.time_patch_size
        values = fmri_values * frame_mask.view(frame_mask.shape[0], *[1] * (fmri_values.ndim - 2), -1).to(
            fmri_values.dtype
        )
        values = pad_to_multiple(values, (-1,), (patch,))
        frame_mask = pad_to_multiple(frame_mask, (1,), (patch,), value=False)
        batch, num_patches = values.shape[0], values.shape[-1] // patch
        if config.input_type == "roi":
            tokens = values.reshape(batch, -1, patch)  # (batch, V · patches, patch): ROI-major
            space_table = self.roi_embedding
        else:
            values = pad_to_multiple(values, (2, 3, 4), config.spatial_patch_size)
            _, channels, height, width, depth, _ = values.shape
            sx, sy, sz = config.spatial_patch_size
            grid = (height // sx, width // sy, depth // sz)
            tokens = values.reshape(batch, channels, grid[0], sx, grid[1], sy, grid[2], sz, num_patches, patch)
            tokens = tokens.permute(0, 2, 4, 6, 8, 1, 3, 5, 7, 9).reshape(batch, math.prod(grid) * num_patches, -1)
            centres = torch.stack(
                torch.meshgrid(*(torch.arange(g, device=values.device) for g in grid), indexing="ij"), dim=-1
            ).reshape(-1, 3)
            centres = (centres.float() + 0.5) * torch.tensor(config.spatial_patch_size, device=values.device)
            space_table = sinusoidal_time_embedding(centres.T, POSITION_FEATURES, SPACE_MAX_PERIOD)  # (3, units, f)
            space_table = space_table.permute(1, 0, 2).reshape(-1, 3 * POSITION_FEATURES).to(values.dtype)
        patch_mask = frame_mask.view(batch, num_patches, patch).any(dim=-1)
        token_mask = patch_mask.repeat(1, tokens.shape[1] // num_patches)
        centre_frame = torch.arange(num_patches, device=values.device, dtype=torch.float32) * patch + (patch - 1) / 2
        seconds = centre_frame.unsqueeze(0) * repetition_time.unsqueeze(1)
        return tokens, token_mask, space_table, seconds

    @can_return_tuple
    @forward_docstring(
        output_attentions="""output_attentions (`bool`, *optional*):
            Return the attention probabilities of every latent self-attention layer in `attentions` (eager for that
            call), each `(batch_size, num_attention_heads, num_latents, num_latents)`. The cross-attention's are not
            returned: it runs in chunks with an online softmax and never holds them.""",
        output_hidden_states="""output_hidden_states (`bool`, *optional*):
            Return the latents after the cross-attention and after every self-attention block.""",
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
            [`FmriBackboneOutput`]: `last_hidden_state` the latents `(batch_size, num_latents, hidden_size)`,
            `pooler_output` their mean.
        """
        output_attentions, output_hidden_states = self.output_switches(output_attentions, output_hidden_states)
        fmri_values, frame_mask, repetition_time = self.check_inputs(fmri_values, attention_mask, repetition_time)
        fmri_values = fmri_values.to(self.latents.dtype)
        tokens, token_mask, space_table, seconds = self.tokenize(fmri_values, frame_mask, repetition_time)
        latents = self.latents.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        latents = self.cross_attention(latents, tokens, token_mask, space_table, seconds)
        latents, all_hidden_states, all_attentions = run_layers(
            self.layers, latents, None, output_attentions, output_hidden_states
        )
        latents = self.norm(latents)
        return FmriBackboneOutput(
            last_hidden_state=latents,
            pooler_output=latents.mean(dim=1),
            token_mask=torch.ones(latents.shape[:2], dtype=torch.bool, device=latents.device),
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


__all__ = ["PerceiverFmriModel", "PerceiverFmriPreTrainedModel"]
