"""ResNet3D configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..config_checks import check_at_least

LAYOUTS = {"r3d_18": [2, 2, 2, 2], "r3d_34": [3, 4, 6, 3]}


@strict
class ResNet3DConfig(PreTrainedConfig):
    r"""
    Configuration of [`ResNet3DModel`]: a 3-D ResNet of BasicBlocks applied to every frame of an fMRI volume series,
    then masked mean pooling over time.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of the input volume.
        image_size (`list[int]`, *optional*, defaults to `[96, 96, 96]`):
            Nominal (H, W, D); any size works (the network ends in global average pooling).
        num_frames (`int`, *optional*, defaults to 20):
            Nominal frames per window; any number works.
        layout (`str`, *optional*, defaults to `"r3d_18"`):
            `"r3d_18"` (BasicBlocks [2, 2, 2, 2]) or `"r3d_34"` ([3, 4, 6, 3]); sets `depths` when `depths` is not given.
        depths (`list[int]`, *optional*):
            Blocks per stage; overrides `layout`.
        embedding_size (`int`, *optional*, defaults to 64):
            Channels of the stem (7×7×7 convolution, stride 2, then 3×3×3 max-pool, stride 2).
        hidden_sizes (`list[int]`, *optional*, defaults to `[64, 128, 256, 512]`):
            Channels per stage; stages after the first halve the resolution.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Unused by the convolutions (Kaiming init), kept for the heads.

    `hidden_size` (the pooled feature size) is derived: `hidden_sizes[-1]`. `num_hidden_layers` is the number of
    stages.
        check_finite_inputs (`bool`, *optional*, defaults to `True`):
            Refuse `fmri_values` with NaN or Inf in real (unmasked) frames, with an `FmriInputError`, instead of
            returning a NaN output. One pass over the input; turn it off for speed when the data are checked already.

    Example:
        >>> from r2tnet_hf import ResNet3DConfig, ResNet3DModel
        >>> model = ResNet3DModel(ResNet3DConfig(layout="r3d_34"))
    """

    model_type = "resnet3d"

    num_channels: int = 1
    image_size: list[int] | tuple[int, ...] = (96, 96, 96)
    num_frames: int = 20
    layout: str = "r3d_18"
    depths: list[int] | tuple[int, ...] | None = None
    embedding_size: int = 64
    hidden_sizes: list[int] | tuple[int, ...] = (64, 128, 256, 512)
    initializer_range: float = 0.02
    check_finite_inputs: bool = True

    def __post_init__(self, **kwargs):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {self.layout!r}")
        self.image_size = list(self.image_size)
        self.depths = list(self.depths) if self.depths is not None else list(LAYOUTS[self.layout])
        self.hidden_sizes = list(self.hidden_sizes)
        self.hidden_size = int(self.hidden_sizes[-1])
        self.num_hidden_layers = len(self.depths)
        kwargs.pop("hidden_size", None)
        kwargs.pop("num_hidden_layers", None)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        super().validate_architecture()
        if len(self.depths) != len(self.hidden_sizes):
            raise ValueError(f"depths ({self.depths}) and hidden_sizes ({self.hidden_sizes}) need one entry per stage")
        check_at_least(self, 1, "depths", "hidden_sizes", "embedding_size", "num_channels")


__all__ = ["ResNet3DConfig"]
