"""PerceiverFmri configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..config_checks import check_at_least, check_choice, check_multiple


@strict
class PerceiverFmriConfig(PreTrainedConfig):
    r"""
    Configuration of [`PerceiverFmriModel`], a Perceiver IO encoder: learned latents cross-attend over input tokens,
    then self-attend. Memory is linear in the number of input tokens.

    Args:
        input_type (`str`, *optional*, defaults to `"roi"`):
            `"roi"`: series `(batch_size, num_rois, num_timepoints)` (parcels or grayordinates); one token per ROI
            and time patch. `"volume"`: `(batch_size, num_channels, height, width, depth, num_timepoints)`; one token
            per spatial patch and time patch (voxel tokens).
        num_rois (`int`, *optional*, defaults to 400):
            V for ROI input (91282 for CIFTI grayordinates). Ignored for volumes.
        roi_embedding_size (`int`, *optional*, defaults to 32):
            Size of the learned per-ROI embedding table, projected to `hidden_size` (V × 32 parameters, not V ×
            hidden).
        num_channels (`int`, *optional*, defaults to 1):
            Channels of volume input.
        image_size (`list[int]`, *optional*, defaults to `[96, 96, 96]`):
            Nominal (H, W, D) of volume input; any size works (positions are Fourier features of voxel coordinates).
        num_frames (`int`, *optional*, defaults to 20):
            Nominal frames per window; any number works.
        spatial_patch_size (`list[int]`, *optional*, defaults to `[8, 8, 8]`):
            Voxels per volume token along (H, W, D).
        time_patch_size (`int`, *optional*, defaults to 4):
            Frames per token.
        num_latents (`int`, *optional*, defaults to 256):
            Number of learned latents (N).
        hidden_size (`int`, *optional*, defaults to 256):
            Latent (and token) features.
        num_hidden_layers (`int`, *optional*, defaults to 6):
            Latent self-attention blocks after the cross-attention.
        num_attention_heads (`int`, *optional*, defaults to 8):
            Heads of the latent self-attention.
        num_cross_attention_heads (`int`, *optional*, defaults to 1):
            Heads of the cross-attention.
        intermediate_size (`int`, *optional*, defaults to 1024):
            MLP hidden size.
        input_chunk_size (`int`, *optional*, defaults to 16384):
            Input tokens per cross-attention chunk. Tokens are embedded and attended chunk by chunk with an online
            softmax, so the peak memory of a forward pass is `O(N · chunk)` beyond the input itself.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            MLP activation.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after attention and MLP.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the latent self-attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the layer norms.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Bias on query, key and value projections.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal initialisation.
        time_embedding_max_period (`float`, *optional*, defaults to 10000.0):
            Longest period, in seconds, of the sinusoidal time features.
        check_finite_inputs (`bool`, *optional*, defaults to `True`):
            Refuse `fmri_values` with NaN or Inf in real (unmasked) frames, with an `FmriInputError`, instead of
            returning a NaN output. One pass over the input; turn it off for speed when the data are checked already.

    Example:
        >>> from r2tnet_hf import PerceiverFmriConfig, PerceiverFmriModel
        >>> model = PerceiverFmriModel(PerceiverFmriConfig(num_rois=91282))  # grayordinates
    """

    model_type = "perceiver_fmri"

    input_type: str = "roi"
    num_rois: int = 400
    roi_embedding_size: int = 32
    num_channels: int = 1
    image_size: list[int] | tuple[int, ...] = (96, 96, 96)
    num_frames: int = 20
    spatial_patch_size: list[int] | tuple[int, ...] = (8, 8, 8)
    time_patch_size: int = 4
    num_latents: int = 256
    hidden_size: int = 256
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    num_cross_attention_heads: int = 1
    intermediate_size: int = 1024
    input_chunk_size: int = 16384
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    initializer_range: float = 0.02
    time_embedding_max_period: float = 10000.0
    check_finite_inputs: bool = True

    def __post_init__(self, **kwargs):
        self.image_size = list(self.image_size)
        self.spatial_patch_size = list(self.spatial_patch_size)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        super().validate_architecture()
        check_choice(self, "input_type", ("roi", "volume"))
        if len(self.image_size) != 3 or len(self.spatial_patch_size) != 3:
            raise ValueError("image_size and spatial_patch_size need 3 entries (H, W, D)")
        sizes = ["num_rois", "roi_embedding_size", "num_channels", "time_patch_size", "num_latents"]
        check_at_least(self, 1, *sizes, "num_hidden_layers", "input_chunk_size", "spatial_patch_size")
        check_multiple(self, "hidden_size", "num_attention_heads")
        check_multiple(self, "hidden_size", "num_cross_attention_heads")

    @property
    def token_size(self) -> int:
        """Values in one input token."""
        if self.input_type == "roi":
            return self.time_patch_size
        sx, sy, sz = self.spatial_patch_size
        return self.num_channels * sx * sy * sz * self.time_patch_size


__all__ = ["PerceiverFmriConfig"]
