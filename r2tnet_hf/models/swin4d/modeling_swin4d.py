"""Swin4D: a 4-D shifted-window transformer over fMRI volumes, in the design of SwiFT (Kim et al., NeurIPS 2023).

Input `(batch, C, H, W, D, T)` → 4-D patches (6×6×6×1 by default) → stages of window attention over (H, W, D, T)
windows, alternating plain and shifted windows → patch merging over space only between stages → global attention in
the last stage → masked mean pool.

**Shifted windows.** As in Swin, a shifted block rolls the token grid by `-window // 2` along each axis
(`torch.roll`), partitions the rolled grid into windows, and masks attention between tokens that came from different
regions across the cyclic wrap. In original coordinates, a token then attends exactly to the tokens of its window on
a grid whose window borders are moved by the shift, `(coordinate - shift) // window` equal on every axis.

**Padding rule (any input size).** (1) The volume is zero-padded at the END of each axis (H, W, D, T) up to the next
multiple of `patch_size`; a token holding at least one real voxel and one real frame is real. (2) At every stage, the
token grid is padded at the end of each axis up to the next multiple of the stage's window (and, on the spatial axes,
of 2 when a patch merging follows). Padded tokens and tokens of masked frames (`attention_mask = 0`) are never keys
for real tokens, are zeroed before merging, and are left out of the pool. Because padding is only ever appended,
adding masked frames at the end of a scan leaves the real tokens' outputs unchanged.

**Positions.** Each stage adds an absolute position embedding: a learned projection of sinusoidal features of the
token centre in voxels (H, W, D) plus one of the token time in seconds (frame × `repetition_time`).

**SwiFT.** With `Swin4DConfig.from_swift(...)` (what `r2tnet import-weights --from swift` builds) the model computes
what SwiFT's `SwinTransformer4D.forward` computes (Transconnectome/SwiFT @ 0b07cb1,
`project/module/models/swin4d_transformer_ver7.py`, `patchembedding.py`; Apache-2.0), checked against outputs of
the reference code in `tests/models/swin4d/test_swift_parity.py` (largest difference 1e-6 in float32, 1e-15 in
float64). Matching, option by option:

- Patch embedding: one linear map of each flattened 4-D patch (SwiFT's `PatchEmbed.fc`; its input features are in
  (voxel, channel) order, ours in (channel, voxel) order, and the converter permutes the columns), with no norm after
  it (`patch_norm=False`).
- Positions (`position_embedding="learned"`): per stage a learned table over the stage's (H, W, D) tokens and one
  over frames, added (space first, then time, as SwiFT's `PositionalEmbedding`) before the stage's blocks; the time
  table is cut to the input's frames. Frame index, not seconds: the TR is not used.
- Blocks: pre-norm window attention with a qkv bias and NO relative position bias (SwiFT's `WindowAttention4D`
  docstring promises one; the code has none), scale head_dim^-1/2, then a GELU (erf) MLP, both residual. SwiFT's
  fused `qkv` is split into our `query` and `key_value` by the converter.
- Windows: `first_window_size` in stage 0, `window_size` after; a window larger than (or equal to) the grid along an
  axis is clipped to it and not shifted along it; odd blocks are shifted by window // 2 with the cyclic roll, and
  pairs from different regions get -100 added to their logits (`shifted_window_mask_value=-100.0`), not -inf
  (a soft mask: with ordinary logits it is within rounding of a hard one, e^-100 ≈ 4e-44, but it is reproduced).
- Window padding (`window_padding="attended_zeros"`): where a grid is not a multiple of its window, SwiFT pads each
  block's normalised tokens with zeros, lets real tokens attend to them, and crops them after the attention; so
  here. *This is a defect of the reference, reproduced for parity*: a real token's output depends on how much padding
  its window got (e.g. on the number of frames), and attention weight goes to tokens that are not data.
- Patch merging (`PatchMergingV2`): 2×2×2 neighbours in space only, concatenated in the same (h, w, d) offset order,
  layer norm, a bias-free linear map to `channel_multiplier` [`c_multiplier`] times the features.
- Last stage: SwiFT's `last_layer_full_MSA=True` (`BasicLayer_FullAttention`) is *not* full attention: its windows
  span all of space but only `window_size[3]` frames, unshifted (`global_attention_time_window=window_size[3]`);
  with `False`, the last stage has shifted `window_size` windows (`global_attention_last_stage=False`).
- Output: SwiFT returns the last stage's tokens `(B, C, h, w, d, t)` with no final norm (it builds `norm` and never
  applies it: `final_layer_norm=False`). `last_hidden_state` holds the same tokens as `(B, h·w·d·t, C)`, row-major
  over (h, w, d, t); `pooler_output`, their mean, is what SwiFT's heads (`clf_mlp`, `reg_mlp`) average.

What differs, and why:

- Training only: SwiFT's MLP drops out after the activation and after the second linear layer (monai's "swin"
  mode), ours after the second only, and we have no stochastic depth (`drop_path_rate`); in eval mode both are
  identities. Initialisation differs (it does not matter for imported weights).
- Masked frames: SwiFT has no `attention_mask` (every frame is real); here frames with `attention_mask = 0` are
  never keys, in every mode. With all frames real nothing changes.
- Inputs SwiFT refuses or fails on: with learned positions the volume must be `image_size` and have at most
  `num_frames` frames (`FmriInputError`, SwiFT asserts or fails to broadcast); a grid that is odd at a merging (SwiFT
  fails to concatenate) is padded and masked here.
- Our defaults are not SwiFT's computation: sinusoidal positions in voxels and seconds (any size, any TR), a norm
  after the patch projection and a final norm, hard window masks, window padding masked (so that a scan's output
  does not depend on its padding), and a global last stage over all frames.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.utils.generic import can_return_tuple

from ...errors import FmriInputError
from ..common import (
    FmriBackboneOutput,
    FmriTransformerPreTrainedModel,
    forward_docstring,
    masked_mean,
    pad_to_multiple,
    sinusoidal_time_embedding,
    transformer_layers,
)
from .configuration_swin4d import Swin4DConfig

POSITION_FEATURES = 32  # sinusoidal features per axis
SPACE_MAX_PERIOD = 1000.0  # voxels


def shifted_windows(
    grid: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...], device=None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The windows of a (possibly shifted) 4-D token grid.

    Args:
        grid (`tuple[int]`): token grid (H, W, D, T); each entry a multiple of the matching `window` entry.
        window (`tuple[int]`): window size per axis.
        shift (`tuple[int]`): cyclic shift per axis (0 for plain windows), less than the window.

    Returns:
        `index` (`torch.LongTensor` of shape `(num_windows, window_volume)`): the flat (row-major) position in the
        original grid of each token of each window of the rolled grid; a permutation of all tokens.
        `same_region` (`torch.BoolTensor` of shape `(num_windows, window_volume, window_volume)` or `None`): for a
        shifted grid, whether two tokens of a window came from the same region (not across the cyclic wrap);
        `None` when nothing is shifted.
    """
    positions = torch.arange(math.prod(grid), device=device).view(grid)
    rolled = torch.roll(positions, shifts=[-s for s in shift], dims=list(range(len(grid))))
    index = _partition(rolled, window)
    if not any(shift):
        return index, None
    region = torch.zeros(grid, dtype=torch.long, device=device)
    for axis, (size, win, step) in enumerate(zip(grid, window, shift)):
        if not step:
            continue
        coordinate = torch.arange(size, device=device)
        # Swin's three slices of the rolled axis: [0, size - win), [size - win, size - step), [size - step, size).
        axis_region = (coordinate >= size - win).long() + (coordinate >= size - step).long()
        view = [1] * len(grid)
        view[axis] = size
        region = region * 3 + axis_region.view(view)
    region = _partition(region, window)
    return index, region.unsqueeze(-1) == region.unsqueeze(-2)


def _partition(grid_values: torch.Tensor, window: tuple[int, ...]) -> torch.Tensor:
    """`(g0, g1, g2, g3)` → `(num_windows, w0·w1·w2·w3)`, windows in row-major order."""
    split = []
    for size, win in zip(grid_values.shape, window):
        split += [size // win, win]
    blocks = grid_values.reshape(split).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return blocks.reshape(-1, math.prod(window))


class Swin4DPatchEmbedding(nn.Module):
    """4-D patches → tokens `(batch, h, w, d, t, embed_dim)`, with the token mask and the token times in seconds."""

    def __init__(self, config: Swin4DConfig):
        super().__init__()
        self.patch_size = tuple(config.patch_size)
        self.projection = nn.Linear(config.num_channels * math.prod(self.patch_size), config.embed_dim)
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps) if config.patch_norm else nn.Identity()

    def forward(self, fmri_values: torch.Tensor, frame_mask: torch.Tensor, repetition_time: torch.Tensor):
        ph, pw, pd, pt = self.patch_size
        values = pad_to_multiple(fmri_values, (2, 3, 4, 5), self.patch_size)
        frame_mask = pad_to_multiple(frame_mask, (1,), (pt,), value=False)
        batch, channels, height, width, depth, frames = values.shape
        grid = (height // ph, width // pw, depth // pd, frames // pt)
        patches = values.reshape(batch, channels, grid[0], ph, grid[1], pw, grid[2], pd, grid[3], pt)
        # the one copy of the volume (clone: never a view of the input, which is then written in place), where
        # masked frames are zeroed: no second copy of the input for the mask
        patches = patches.permute(0, 2, 4, 6, 8, 1, 3, 5, 7, 9).clone(memory_format=torch.contiguous_format)
        frames_mask = frame_mask.view(batch, 1, 1, 1, grid[3], 1, 1, 1, 1, pt).to(patches.dtype)
        patches = patches.mul_(frames_mask).reshape(batch, *grid, -1)
        tokens = self.norm(self.projection(patches))
        time_mask = frame_mask.view(batch, grid[3], pt).any(dim=-1)
        token_mask = time_mask[:, None, None, None, :].expand(batch, *grid).contiguous()
        centre_frame = torch.arange(grid[3], device=values.device, dtype=torch.float32) * pt + (pt - 1) / 2
        seconds = centre_frame.unsqueeze(0) * repetition_time.unsqueeze(1)
        return tokens, token_mask, seconds


class Swin4DPositionEmbedding(nn.Module):
    """Absolute space + time positions of one stage: sinusoidal features of the token centre (voxels) and of its
    time (seconds), each through a learned linear map to the stage's features."""

    def __init__(self, dim: int, voxels_per_token: tuple[int, int, int], time_max_period: float):
        super().__init__()
        self.voxels_per_token = voxels_per_token
        self.time_max_period = time_max_period
        self.space_projection = nn.Linear(3 * POSITION_FEATURES, dim)
        self.time_projection = nn.Linear(POSITION_FEATURES, dim)

    def forward(self, grid: tuple[int, ...], seconds: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        device = seconds.device
        axes = []
        for axis, size in enumerate(grid[:3]):
            centre = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) * self.voxels_per_token[axis]
            features = sinusoidal_time_embedding(centre[None], POSITION_FEATURES, SPACE_MAX_PERIOD)[0]
            view = [1, 1, 1, POSITION_FEATURES]
            view[axis] = size
            axes.append(features.view(view).expand(*grid[:3], POSITION_FEATURES))
        space = self.space_projection(torch.cat(axes, dim=-1).to(dtype))  # (h, w, d, dim)
        time = self.time_projection(
            sinusoidal_time_embedding(seconds, POSITION_FEATURES, self.time_max_period).to(dtype)
        )  # (batch, t, dim)
        return space[None, :, :, :, None, :] + time[:, None, None, None, :, :]


class Swin4DLearnedPositionEmbedding(nn.Module):
    """SwiFT's absolute positions of one stage: a learned table over its (H, W, D) tokens, `spatial`
    `(h, w, d, dim)`, and one over frames, `temporal` `(frames, dim)`, added in that order. A grid larger than a table
    (padding only) gets zeros there; the time table is cut to the grid's frames."""

    def __init__(self, dim: int, grid: tuple[int, int, int], frames: int):
        super().__init__()
        self.spatial = nn.Parameter(torch.zeros(*grid, dim))
        self.temporal = nn.Parameter(torch.zeros(frames, dim))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        grid = tuple(hidden_states.shape[1:5])
        spatial = pad_to_size(self.spatial, grid[:3]).to(hidden_states.dtype)
        temporal = pad_to_size(self.temporal, grid[3:]).to(hidden_states.dtype)
        hidden_states = hidden_states + spatial[None, :, :, :, None, :]
        return hidden_states + temporal[None, None, None, None, :, :]


def pad_to_size(table: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """The leading axes of `table` cut or zero-padded at their end to `size`."""
    table = table[tuple(slice(0, n) for n in size)]
    padding = []
    for axis in reversed(range(table.ndim)):
        padding += [0, size[axis] - table.shape[axis] if axis < len(size) else 0]
    return torch.nn.functional.pad(table, padding) if any(padding) else table


class Swin4DPatchMerging(nn.Module):
    """2×2×2 neighbouring tokens (space only; time is kept) → one token with `multiplier` times the features."""

    def __init__(self, dim: int, layer_norm_eps: float, multiplier: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(8 * dim, eps=layer_norm_eps)
        self.reduction = nn.Linear(8 * dim, multiplier * dim, bias=False)

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states = hidden_states * token_mask.unsqueeze(-1).to(hidden_states.dtype)
        batch, height, width, depth, frames, dim = hidden_states.shape
        grouped = hidden_states.view(batch, height // 2, 2, width // 2, 2, depth // 2, 2, frames, dim)
        grouped = grouped.permute(0, 1, 3, 5, 7, 2, 4, 6, 8).reshape(
            batch, height // 2, width // 2, depth // 2, frames, -1
        )
        merged_mask = token_mask.view(batch, height // 2, 2, width // 2, 2, depth // 2, 2, frames).any(dim=(2, 4, 6))
        return self.reduction(self.norm(grouped)), merged_mask


class Swin4DStage(nn.Module):
    """Position embedding, `depth` window-attention blocks (plain, shifted, plain, ...), then optional merging."""

    def __init__(self, config: Swin4DConfig, stage: int, grid: tuple[int, int, int] | None = None):
        super().__init__()
        self.dim = config.stage_dim(stage)
        first = stage == 0 and config.first_window_size is not None
        self.window_size = tuple(config.first_window_size if first else config.window_size)
        self.is_last = stage == len(config.depths) - 1
        self.is_global = self.is_last and config.global_attention_last_stage
        self.global_time_window = config.global_attention_time_window
        self.mask_value = config.shifted_window_mask_value
        self.attended_padding = config.window_padding == "attended_zeros"
        self.learned_positions = config.position_embedding == "learned"
        if self.learned_positions:
            frames = -(-config.num_frames // config.patch_size[3])
            self.position_embedding = Swin4DLearnedPositionEmbedding(self.dim, grid, frames)
        else:
            scale = 2**stage
            voxels = tuple(p * scale for p in config.patch_size[:3])
            self.position_embedding = Swin4DPositionEmbedding(self.dim, voxels, config.time_embedding_max_period)
        self.blocks = transformer_layers(
            config,
            count=config.depths[stage],
            hidden_size=self.dim,
            num_heads=config.num_heads[stage],
            intermediate_size=int(self.dim * config.mlp_ratio),
        )
        self.merging = (
            None if self.is_last else Swin4DPatchMerging(self.dim, config.layer_norm_eps, config.channel_multiplier)
        )

    def windows_for(self, grid: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Window and shift of this stage for a token grid (before padding)."""
        if self.is_global:
            frames = grid[3] if self.global_time_window is None else min(self.global_time_window, grid[3])
            return (*grid[:3], frames), (0, 0, 0, 0)
        window = tuple(min(w, g) for w, g in zip(self.window_size, grid))
        shift = tuple(w // 2 if w < g else 0 for w, g in zip(window, grid))
        return window, shift

    def attention_mask(
        self, key_mask: torch.Tensor | None, same_region: torch.Tensor | None, index: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """The additive SDPA mask of one window layout, `(batch, windows, 1, tokens, tokens)` (or `(windows, 1,
        tokens, tokens)` when no key is masked), broadcast over heads, or `None` where every token of every window
        may attend to all of its window: 0 for keys where `key_mask` `(batch, grid tokens)` is true (`None`: all
        are) and within a region of a shifted window, `-inf` elsewhere (or `shifted_window_mask_value` across
        regions), and 0 for every token to itself. Built once per stage in the model's dtype, so that SDPA neither
        converts it nor keeps a copy of its own for each block."""
        if key_mask is None and same_region is None:
            return None
        device = index.device
        soft = same_region is not None and self.mask_value is not None
        allowed = None  # the pairs not at -inf
        if key_mask is not None:
            keys = key_mask[:, index].unsqueeze(-2)  # (batch, windows, 1, tokens)
            allowed = keys | torch.eye(index.shape[1], dtype=torch.bool, device=device)
        if same_region is not None and not soft:
            allowed = same_region if allowed is None else allowed & same_region
        mask = torch.zeros((allowed if allowed is not None else same_region).shape, dtype=dtype, device=device)
        if allowed is not None:
            mask.masked_fill_(~allowed, -math.inf)
        if soft:  # the value across regions, added
            mask = mask + torch.zeros(same_region.shape, dtype=dtype, device=device).masked_fill_(
                ~same_region, self.mask_value
            )
        return mask.unsqueeze(-3)

    def forward(self, hidden_states, token_mask, seconds, time_patch: int, repetition_time, output_attentions=False):
        """One stage; returns `(hidden_states, token_mask, seconds)` for the next, this stage's output before
        merging, and with `output_attentions` each block's attention probabilities `(batch_size * num_windows,
        num_heads, window_tokens, window_tokens)` (else `None`)."""
        real_grid = tuple(hidden_states.shape[1:5])
        window, shift = self.windows_for(real_grid)
        if self.attended_padding:  # SwiFT: each block pads to its window; merging needs no padding of its own
            multiples = window
        else:
            multiples = tuple(math.lcm(w, 1 if (self.is_last or axis == 3) else 2) for axis, w in enumerate(window))
        if self.learned_positions:  # the tables cover the stage's grid before window padding
            hidden_states = self.position_embedding(hidden_states)
        hidden_states = pad_to_multiple(hidden_states, (1, 2, 3, 4), multiples)
        token_mask = pad_to_multiple(token_mask, (1, 2, 3, 4), multiples, value=False)
        grid = tuple(hidden_states.shape[1:5])
        if not self.learned_positions:
            if grid[3] > seconds.shape[1]:  # padded frames continue the time grid
                extra = torch.arange(seconds.shape[1], grid[3], device=seconds.device, dtype=torch.float32)
                extra = (extra * time_patch + (time_patch - 1) / 2).unsqueeze(0) * repetition_time.unsqueeze(1)
                seconds = torch.cat([seconds, extra], dim=1)
            hidden_states = hidden_states + self.position_embedding(grid, seconds, hidden_states.dtype)

        batch = hidden_states.shape[0]
        flat = hidden_states.reshape(batch, -1, self.dim)
        key_mask = token_mask.reshape(batch, -1)
        padding = None  # window padding that real tokens attend to (SwiFT), as a flat (grid tokens,) mask
        if self.attended_padding and grid != real_grid:
            real = torch.ones(real_grid, dtype=torch.bool, device=flat.device)
            padding = ~pad_to_multiple(real, (0, 1, 2, 3), multiples, value=False).flatten()
            key_mask = key_mask | padding
        if bool(key_mask.all()):  # no key masked: plain windows need no mask, shifted ones one for all the batch
            key_mask = None
        layouts = {}  # plain and shifted windows: (index, inverse permutation, mask, keep), built once per stage
        attentions = () if output_attentions else None
        for number, block in enumerate(self.blocks):
            block_shift = shift if number % 2 else (0, 0, 0, 0)
            if block_shift not in layouts:
                index, same_region = shifted_windows(grid, window, block_shift, device=flat.device)
                mask = self.attention_mask(key_mask, same_region, index, flat.dtype)
                keep = None if padding is None else (~padding[index]).unsqueeze(-1).to(flat.dtype)
                layouts[block_shift] = (index, torch.argsort(index.flatten()), mask, keep)
            index, inverse, mask, keep = layouts[block_shift]
            windows = block(flat[:, index], mask, output_attentions=output_attentions, keep=keep)
            if output_attentions:
                windows, weights = windows
                attentions += (weights,)
            flat = windows.flatten(1, 2)[:, inverse]
        hidden_states = flat.view(batch, *grid, self.dim)
        if self.attended_padding and grid != real_grid:  # SwiFT crops the window padding after every block
            crop = (slice(None), *(slice(0, n) for n in real_grid))
            hidden_states, token_mask = hidden_states[crop], token_mask[crop]
            seconds = seconds[:, : real_grid[3]]
        stage_output = hidden_states
        if self.merging is not None:
            if self.attended_padding:  # an odd grid (SwiFT fails there) is padded and masked
                hidden_states = pad_to_multiple(hidden_states, (1, 2, 3), (2, 2, 2))
                token_mask = pad_to_multiple(token_mask, (1, 2, 3), (2, 2, 2), value=False)
            hidden_states, token_mask = self.merging(hidden_states, token_mask)
        return hidden_states, token_mask, seconds, stage_output, attentions


class Swin4DPreTrainedModel(FmriTransformerPreTrainedModel):
    config: Swin4DConfig
    config_class = Swin4DConfig
    base_model_prefix = "swin4d"


class Swin4DModel(Swin4DPreTrainedModel):
    r"""
    The Swin4D backbone: fMRI volumes → token features of the last stage and a pooled feature per scan.

    Example:
        >>> import torch
        >>> from r2tnet_hf import Swin4DConfig, Swin4DModel
        >>> config = Swin4DConfig(image_size=[12, 12, 12], num_frames=4, patch_size=[2, 2, 2, 1],
        ...                       window_size=[2, 2, 2, 2], embed_dim=16, depths=[2, 2], num_heads=[2, 4])
        >>> out = Swin4DModel(config)(torch.randn(2, 1, 12, 12, 12, 4), repetition_time=0.8)
        >>> out.pooler_output.shape  # config.hidden_size = 16 * 2
        torch.Size([2, 32])
    """

    def __init__(self, config: Swin4DConfig):
        super().__init__(config)
        self.embeddings = Swin4DPatchEmbedding(config)
        grids = [tuple(-(-size // patch) for size, patch in zip(config.image_size, config.patch_size))]
        for _ in config.depths[1:]:  # the stages' token grids for learned positions: merging halves space
            grids.append(tuple(-(-size // 2) for size in grids[-1]))
        self.stages = nn.ModuleList(Swin4DStage(config, stage, grids[stage]) for stage in range(len(config.depths)))
        self.norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.final_layer_norm else nn.Identity()
        )
        self.post_init()

    @can_return_tuple
    @forward_docstring(
        fmri_values="""fmri_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width, depth, num_timepoints)`):
            The volumes, time last. Any (H, W, D, T): sizes that do not divide the strides are padded and masked
            (with `position_embedding="learned"`, (H, W, D) must be `config.image_size` and T at most
            `config.num_frames`).""",
        repetition_time="""repetition_time (`torch.FloatTensor` of shape `(batch_size,)` or `float`):
            Seconds per frame. Required with sinusoidal positions (token times are in seconds); optional and unused
            with `position_embedding="learned"` (SwiFT's positions index frames).""",
        output_attentions="""output_attentions (`bool`, *optional*):
            Return every block's window-attention probabilities in `attentions` (eager for that call), each
            `(batch_size * num_windows, num_heads, window_tokens, window_tokens)`, blocks of all stages in order.""",
        output_hidden_states="""output_hidden_states (`bool`, *optional*):
            Return every stage's output (before merging), flattened to `(batch_size, tokens, features)`.""",
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
            [`FmriBackboneOutput`]: `last_hidden_state` `(batch_size, tokens, hidden_size)` over the last stage's
            (padded) grid in row-major (H, W, D, T) order, `token_mask` marking its real tokens, and `pooler_output`
            `(batch_size, hidden_size)`, their masked mean. Under `from_swift`, `last_hidden_state` is SwiFT's output
            `(B, C, h, w, d, t)` as `(B, h·w·d·t, C)`.
        """
        output_attentions, output_hidden_states = self.output_switches(output_attentions, output_hidden_states)
        learned = self.config.position_embedding == "learned"
        if learned and repetition_time is None:
            repetition_time = 1.0  # not used: learned positions index frames
        fmri_values, frame_mask, repetition_time = self.check_inputs(
            fmri_values, attention_mask, repetition_time, self.config.image_size if learned else None
        )
        if learned and fmri_values.shape[-1] > self.config.num_frames:
            raise FmriInputError(
                f"fmri_values: input has {fmri_values.shape[-1]} frames but the model's learned time positions cover "
                f"{self.config.num_frames} (config.num_frames)"
            )
        fmri_values = fmri_values.to(self.embeddings.projection.weight.dtype)
        hidden_states, token_mask, seconds = self.embeddings(fmri_values, frame_mask, repetition_time)
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        time_patch = self.config.patch_size[3]
        for stage in self.stages:
            hidden_states, token_mask, seconds, stage_output, attentions = stage(
                hidden_states, token_mask, seconds, time_patch, repetition_time, output_attentions
            )
            if output_hidden_states:
                all_hidden_states += (stage_output.flatten(1, 4),)
            if output_attentions:
                all_attentions += attentions
        batch = hidden_states.shape[0]
        hidden_states = self.norm(hidden_states.reshape(batch, -1, self.config.hidden_size))
        token_mask = token_mask.reshape(batch, -1)
        return FmriBackboneOutput(
            last_hidden_state=hidden_states,
            pooler_output=masked_mean(hidden_states, token_mask),
            token_mask=token_mask,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


__all__ = ["Swin4DModel", "Swin4DPreTrainedModel"]
