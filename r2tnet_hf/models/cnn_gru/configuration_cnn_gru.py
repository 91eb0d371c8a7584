"""CNN+GRU configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..config_checks import check_at_least, check_choice


@strict
class CnnGruConfig(PreTrainedConfig):
    r"""
    Configuration of [`CnnGruModel`]: a small 3-D CNN applied to every frame, then a GRU over the frames.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of the input volume.
        image_size (`list[int]`, *optional*, defaults to `[96, 96, 96]`):
            Nominal (H, W, D); any size works (the CNN ends in global average pooling).
        num_frames (`int`, *optional*, defaults to 20):
            Nominal frames per window; any number works.
        conv_channels (`list[int]`, *optional*, defaults to `[16, 32, 64, 128]`):
            Output channels of the CNN's blocks (3×3×3 conv, stride 2 → batch norm → ReLU).
        hidden_size (`int`, *optional*, defaults to 256):
            GRU state size (the pooled feature size).
        num_hidden_layers (`int`, *optional*, defaults to 2):
            Stacked GRU layers.
        pooling (`str`, *optional*, defaults to `"last"`):
            `"last"`: the last GRU layer's state after the last real frame; `"mean"`: the masked mean of its outputs.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout between GRU layers.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Kept for the heads.
        check_finite_inputs (`bool`, *optional*, defaults to `True`):
            Refuse `fmri_values` with NaN or Inf in real (unmasked) frames, with an `FmriInputError`, instead of
            returning a NaN output. One pass over the input; turn it off for speed when the data are checked already.

    Example:
        >>> from r2tnet_hf import CnnGruConfig, CnnGruModel
        >>> model = CnnGruModel(CnnGruConfig(pooling="mean"))
    """

    model_type = "cnn_gru"

    num_channels: int = 1
    image_size: list[int] | tuple[int, ...] = (96, 96, 96)
    num_frames: int = 20
    conv_channels: list[int] | tuple[int, ...] = (16, 32, 64, 128)
    hidden_size: int = 256
    num_hidden_layers: int = 2
    pooling: str = "last"
    hidden_dropout_prob: float | int = 0.0
    initializer_range: float = 0.02
    check_finite_inputs: bool = True

    def __post_init__(self, **kwargs):
        self.image_size = list(self.image_size)
        self.conv_channels = list(self.conv_channels)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        super().validate_architecture()
        if not self.conv_channels:
            raise ValueError("CnnGruConfig.conv_channels needs at least one convolution")
        check_at_least(self, 1, "conv_channels", "hidden_size", "num_hidden_layers")
        check_choice(self, "pooling", ("last", "mean"))


__all__ = ["CnnGruConfig"]
