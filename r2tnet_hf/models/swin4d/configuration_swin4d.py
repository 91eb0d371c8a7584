"""Swin4D configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class Swin4DConfig(PreTrainedConfig):
    r"""
    Configuration of [`Swin4DModel`], a 4-D Swin transformer over fMRI volumes `(batch_size, num_channels, height,
    width, depth, num_timepoints)` in the design of SwiFT (Kim et al., NeurIPS 2023): 4-D patches, shifted 4-D windows,
    patch merging over space only, global attention in the last stage.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of the input volume.
        image_size (`list[int]`, *optional*, defaults to `[96, 96, 96]`):
            Nominal (H, W, D) of the input. Other sizes are accepted: they are padded (see [`Swin4DModel`]).
        num_frames (`int`, *optional*, defaults to 20):
            Nominal frames per window. Other lengths are accepted (padded and masked the same way).
        patch_size (`list[int]`, *optional*, defaults to `[6, 6, 6, 1]`):
            Voxels × voxels × voxels × frames of one token.
        window_size (`list[int]`, *optional*, defaults to `[4, 4, 4, 4]`):
            Tokens per attention window along (H, W, D, T); clipped to the token grid of a stage.
        embed_dim (`int`, *optional*, defaults to 36):
            Token features of the first stage; each patch merging doubles it.
        depths (`list[int]`, *optional*, defaults to `[2, 2, 6, 2]`):
            Blocks per stage; within a stage, blocks alternate plain and shifted windows.
        num_heads (`list[int]`, *optional*, defaults to `[3, 6, 12, 24]`):
            Attention heads per stage.
        mlp_ratio (`float`, *optional*, defaults to 4.0):
            MLP hidden size ÷ token features.
        global_attention_last_stage (`bool`, *optional*, defaults to `True`):
            The last stage attends over all its tokens (one window, no shift), as in SwiFT.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            MLP activation.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after attention and MLP.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the layer norms.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Bias on the query, key and value projections.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal initialisation of linear layers.
        time_embedding_max_period (`float`, *optional*, defaults to 10000.0):
            Longest period, in seconds, of the sinusoidal time features (token times are in seconds).

    `hidden_size` (the pooled feature size) is derived: `embed_dim * 2 ** (len(depths) - 1)`, 288 by default.

    Example:
        >>> from r2tnet_hf import Swin4DConfig, Swin4DModel
        >>> model = Swin4DModel(Swin4DConfig())  # 96×96×96×20 volumes, 6×6×6×1 patches
    """

    model_type = "swin4d"
    attribute_map = {"num_hidden_layers": "num_layers", "num_attention_heads": "num_heads"}

    num_channels: int = 1
    image_size: list[int] | tuple[int, ...] = (96, 96, 96)
    num_frames: int = 20
    patch_size: list[int] | tuple[int, ...] = (6, 6, 6, 1)
    window_size: list[int] | tuple[int, ...] = (4, 4, 4, 4)
    embed_dim: int = 36
    depths: list[int] | tuple[int, ...] = (2, 2, 6, 2)
    num_heads: list[int] | tuple[int, ...] = (3, 6, 12, 24)
    mlp_ratio: float | int = 4.0
    global_attention_last_stage: bool = True
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    layer_norm_eps: float = 1e-5
    qkv_bias: bool = True
    initializer_range: float = 0.02
    time_embedding_max_period: float = 10000.0

    def __post_init__(self, **kwargs):
        self.image_size = list(self.image_size)
        self.patch_size = list(self.patch_size)
        self.window_size = list(self.window_size)
        self.depths = list(self.depths)
        self.num_heads = list(self.num_heads)
        self.num_layers = len(self.depths)
        # The pooled feature size, read by R2TNetConfig (as transformers' SwinConfig derives it).
        self.hidden_size = int(self.embed_dim * 2 ** (len(self.depths) - 1))
        kwargs.pop("hidden_size", None)
        kwargs.pop("num_layers", None)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        super().validate_architecture()
        if len(self.image_size) != 3 or len(self.patch_size) != 4 or len(self.window_size) != 4:
            raise ValueError(
                f"image_size needs 3 entries (H, W, D), patch_size and window_size 4 (H, W, D, T); got "
                f"{self.image_size}, {self.patch_size}, {self.window_size}"
            )
        if min(self.patch_size + self.window_size + self.image_size + self.depths) < 1 or self.num_frames < 1:
            raise ValueError("Swin4DConfig sizes, windows, patches and depths must be >= 1")
        if len(self.num_heads) != len(self.depths):
            raise ValueError(f"num_heads ({self.num_heads}) needs one entry per stage of depths ({self.depths})")
        for stage, heads in enumerate(self.num_heads):
            dim = self.embed_dim * 2**stage
            if dim % heads:
                raise ValueError(f"stage {stage}: features {dim} are not a multiple of num_heads {heads}")


__all__ = ["Swin4DConfig"]
