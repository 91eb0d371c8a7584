"""Vit4D configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..config_checks import check_at_least, check_choice, check_multiple


@strict
class Vit4DConfig(PreTrainedConfig):
    r"""
    Configuration of [`Vit4DModel`], a ViT over 4-D tubelets of fMRI volumes `(batch_size, num_channels, height,
    width, depth, num_timepoints)`.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of the input volume.
        image_size (`list[int]`, *optional*, defaults to `[96, 96, 96]`):
            (H, W, D) of the input; inputs must have exactly this size (the spatial position table is learned).
        num_frames (`int`, *optional*, defaults to 20):
            Nominal frames per window. Any length is accepted: time positions are computed from seconds.
        patch_size (`list[int]`, *optional*, defaults to `[16, 16, 16, 2]`):
            Voxels × voxels × voxels × frames of one tubelet. Sizes that do not divide are zero-padded at the end
            of each axis; tubelets of masked frames only are masked.
        hidden_size (`int`, *optional*, defaults to 384):
            Token features.
        num_hidden_layers (`int`, *optional*, defaults to 6):
            Pre-norm transformer blocks.
        num_attention_heads (`int`, *optional*, defaults to 6):
            Attention heads per block.
        intermediate_size (`int`, *optional*, defaults to 1536):
            MLP hidden size.
        pooling (`str`, *optional*, defaults to `"mean"`):
            `"mean"`: masked mean of the tokens; `"cls"`: a learned CLS token's output.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            MLP activation.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the embedding, attention and MLP.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the layer norms.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Bias on the query, key and value projections.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal initialisation.
        time_embedding_max_period (`float`, *optional*, defaults to 10000.0):
            Longest period, in seconds, of the sinusoidal time features.
        check_finite_inputs (`bool`, *optional*, defaults to `True`):
            Refuse `fmri_values` with NaN or Inf in real (unmasked) frames, with an `FmriInputError`, instead of
            returning a NaN output. One pass over the input; turn it off for speed when the data are checked already.

    Example:
        >>> from r2tnet_hf import Vit4DConfig, Vit4DModel
        >>> model = Vit4DModel(Vit4DConfig(pooling="cls"))
    """

    model_type = "vit4d"

    num_channels: int = 1
    image_size: list[int] | tuple[int, ...] = (96, 96, 96)
    num_frames: int = 20
    patch_size: list[int] | tuple[int, ...] = (16, 16, 16, 2)
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 6
    intermediate_size: int = 1536
    pooling: str = "mean"
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
        self.patch_size = list(self.patch_size)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        super().validate_architecture()
        if len(self.image_size) != 3 or len(self.patch_size) != 4:
            raise ValueError(f"image_size needs 3 entries, patch_size 4; got {self.image_size}, {self.patch_size}")
        check_at_least(self, 1, "image_size", "patch_size", "num_hidden_layers", "num_frames")
        check_multiple(self, "hidden_size", "num_attention_heads")
        check_choice(self, "pooling", ("mean", "cls"))

    @property
    def spatial_grid(self) -> list[int]:
        """Tubelets along (H, W, D) after padding to the patch size."""
        return [-(-size // patch) for size, patch in zip(self.image_size, self.patch_size)]


__all__ = ["Vit4DConfig"]
