"""Swin4D configuration."""

from __future__ import annotations

import math
import numbers

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..config_checks import check_at_least, check_choice

SWIN4D_POSITION_EMBEDDINGS = ("sinusoidal", "learned")
SWIN4D_WINDOW_PADDINGS = ("masked", "attended_zeros")

# What `Swin4DConfig.from_swift` sets beyond the architecture: SwiFT's way of computing (see `Swin4DModel`).
SWIFT_OPTIONS = dict(
    position_embedding="learned",
    patch_norm=False,
    final_layer_norm=False,
    shifted_window_mask_value=-100.0,
    window_padding="attended_zeros",
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)
# SwiFT `SwinTransformer4D` arguments that do not change what the model computes in eval mode.
SWIFT_IGNORED_ARGUMENTS = ("drop_path_rate", "use_checkpoint", "to_float", "num_classes")
# The list fields: what one entry is, and an example.
SWIN4D_LIST_FIELDS = {
    "image_size": ("voxels per axis (H, W, D)", "[96, 96, 96]"),
    "patch_size": ("voxels or frames per axis (H, W, D, T)", "[6, 6, 6, 1]"),
    "window_size": ("tokens per axis (H, W, D, T)", "[4, 4, 4, 4]"),
    "first_window_size": ("tokens per axis (H, W, D, T)", "[2, 2, 2, 2]"),
    "depths": ("blocks per stage", "[2, 2, 6, 2]"),
    "num_heads": ("attention heads per stage", "[3, 6, 12, 24]"),
}


@strict
class Swin4DConfig(PreTrainedConfig):
    r"""
    Configuration of [`Swin4DModel`], a 4-D Swin transformer over fMRI volumes `(batch_size, num_channels, height,
    width, depth, num_timepoints)` in the design of SwiFT (Kim et al., NeurIPS 2023): 4-D patches, shifted 4-D windows,
    patch merging over space only, global attention in the last stage.

    The defaults are our variant (positions in seconds, any input size, padding masked). The options marked *SwiFT*
    make the model compute exactly as SwiFT's `SwinTransformer4D` (`swin4d_transformer_ver7.py`);
    [`Swin4DConfig.from_swift`] sets them all from SwiFT's constructor arguments. SwiFT names in brackets.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of the input volume.
        image_size (`list[int]`, *optional*, defaults to `[96, 96, 96]`):
            Nominal (H, W, D) of the input [`img_size[:3]`]. Other sizes are accepted: they are padded (see
            [`Swin4DModel`]), except with `position_embedding="learned"`, whose tables are of this size.
        num_frames (`int`, *optional*, defaults to 20):
            Nominal frames per window [`img_size[3]`]. Other lengths are accepted (padded and masked the same way);
            with `position_embedding="learned"` it is the length of the learned time table, the most frames an input
            may have.
        patch_size (`list[int]`, *optional*, defaults to `[6, 6, 6, 1]`):
            Voxels × voxels × voxels × frames of one token.
        window_size (`list[int]`, *optional*, defaults to `[4, 4, 4, 4]`):
            Tokens per attention window along (H, W, D, T); clipped to the token grid of a stage.
        first_window_size (`list[int]`, *optional*):
            The window of the first stage [`first_window_size`]; defaults to `window_size`.
        embed_dim (`int`, *optional*, defaults to 36):
            Token features of the first stage; each patch merging multiplies it by `channel_multiplier`.
        channel_multiplier (`int`, *optional*, defaults to 2):
            Features after a patch merging ÷ features before [`c_multiplier`].
        depths (`list[int]`, *optional*, defaults to `[2, 2, 6, 2]`):
            Blocks per stage; within a stage, blocks alternate plain and shifted windows.
        num_heads (`list[int]`, *optional*, defaults to `[3, 6, 12, 24]`):
            Attention heads per stage.
        mlp_ratio (`float`, *optional*, defaults to 4.0):
            MLP hidden size ÷ token features.
        global_attention_last_stage (`bool`, *optional*, defaults to `True`):
            The last stage attends over all its tokens (one window, no shift) [`last_layer_full_MSA`]. When `False`,
            it uses shifted `window_size` windows like the other stages (SwiFT's default).
        global_attention_time_window (`int`, *optional*):
            With `global_attention_last_stage`, frames per window of the last stage: its windows span all of space
            and this many frames, unshifted. `None` (default): all frames, one window. *SwiFT*: `window_size[3]`
            (SwiFT's "full" last stage is full over space only).
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
        position_embedding (`str`, *optional*, defaults to `"sinusoidal"`):
            `"sinusoidal"`: per stage, a learned projection of sinusoidal features of the token centre (voxels) and of
            its time (seconds, so `repetition_time` is required). *SwiFT* `"learned"`: per stage, a learned table over
            the stage's (H, W, D) tokens plus one over its frames (frame index, the TR is not used), added before the
            stage [`PositionalEmbedding`]; the input must then have `image_size` and at most `num_frames` frames.
        patch_norm (`bool`, *optional*, defaults to `True`):
            A layer norm after the patch projection. *SwiFT*: `False` [`patch_norm`].
        final_layer_norm (`bool`, *optional*, defaults to `True`):
            A layer norm on the last stage's tokens. *SwiFT*: `False` (SwiFT builds `norm` but never applies it).
        shifted_window_mask_value (`float`, *optional*):
            How a shifted window keeps apart tokens that came from different regions across the cyclic wrap: `None`
            (default) forbids those pairs; a number is added to their attention logits instead. *SwiFT*: `-100.0`.
        window_padding (`str`, *optional*, defaults to `"masked"`):
            Tokens that only pad a stage's grid to a multiple of its window: `"masked"`, they are never keys (the
            padding rule of [`Swin4DModel`]); *SwiFT* `"attended_zeros"`, in every block they are zeros after the first
            layer norm and real tokens attend to them, and they are cropped after the stage.

    As in transformers' `SwinConfig`, the size is set per stage (`embed_dim`, `depths`, `num_heads`), and the
    transformers-standard names are derived: `hidden_size` (the pooled feature size, read by [`R2TNetConfig`]) is
    `embed_dim * channel_multiplier ** (len(depths) - 1)`, 288 by default; `num_hidden_layers` is the number of stages,
    `len(depths)`; `num_attention_heads` is `num_heads`, a list. Passing `hidden_size` or `num_hidden_layers` that
    disagree with those, or an int where a list is expected, raises a one-line `ValueError` saying what to set, e.g.
    `Swin4DConfig(embed_dim=12, depths=[2, 2], num_heads=[3, 6])` for `hidden_size` 24 over two stages.
        check_finite_inputs (`bool`, *optional*, defaults to `True`):
            Refuse `fmri_values` with NaN or Inf in real (unmasked) frames, with an `FmriInputError`, instead of
            returning a NaN output. One pass over the input; turn it off for speed when the data are checked already.

    Example:
        >>> from r2tnet_hf import Swin4DConfig, Swin4DModel
        >>> model = Swin4DModel(Swin4DConfig())  # 96×96×96×20 volumes, 6×6×6×1 patches
        >>> swift = Swin4DConfig.from_swift(dict(  # SwiFT's SwinTransformer4D arguments (its argparse defaults)
        ...     img_size=[96, 96, 96, 20], in_chans=1, embed_dim=24, window_size=[4, 4, 4, 4],
        ...     first_window_size=[2, 2, 2, 2], patch_size=[6, 6, 6, 1], depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]))
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
    first_window_size: list[int] | tuple[int, ...] | None = None
    channel_multiplier: int = 2
    global_attention_time_window: int | None = None
    position_embedding: str = "sinusoidal"
    patch_norm: bool = True
    final_layer_norm: bool = True
    shifted_window_mask_value: float | int | None = None
    window_padding: str = "masked"
    check_finite_inputs: bool = True

    def __post_init__(self, **kwargs):
        if "num_attention_heads" in kwargs:  # transformers' name for num_heads (attribute_map)
            self.num_heads = kwargs.pop("num_attention_heads")
            named = {"num_heads": "num_attention_heads (Swin4DConfig.num_heads)"}
        else:
            named = {}
        for name in SWIN4D_LIST_FIELDS:
            if name != "first_window_size" or self.first_window_size is not None:  # the one optional list
                setattr(self, name, _int_list(named.get(name, f"Swin4DConfig.{name}"), name, getattr(self, name)))
        if self.shifted_window_mask_value is not None:
            self.shifted_window_mask_value = float(self.shifted_window_mask_value)
        self.num_layers = len(self.depths)
        # The pooled feature size, read by R2TNetConfig (as transformers' SwinConfig derives it).
        self.hidden_size = int(self.embed_dim * self.channel_multiplier ** (len(self.depths) - 1))
        hidden_size, num_layers = kwargs.pop("hidden_size", None), kwargs.pop("num_hidden_layers", None)
        # A saved config (`to_dict`) holds the derived `hidden_size` and `num_layers`: recomputed, as they may be stale
        # after an attribute was set; only values a caller passes are checked.
        if kwargs.pop("num_layers", None) is None:
            self._check_derived(hidden_size, num_layers)
        super().__post_init__(**kwargs)

    def _check_derived(self, hidden_size, num_layers) -> None:
        """`hidden_size` and `num_hidden_layers` follow from the per-stage fields, as in transformers' SwinConfig: given,
        they must agree with them."""
        stages, growth = len(self.depths), self.channel_multiplier ** (len(self.depths) - 1)
        if num_layers is not None and num_layers != stages:
            count = num_layers if isinstance(num_layers, int) and num_layers > 0 else 2
            raise ValueError(
                f"Swin4DConfig.num_hidden_layers is the number of stages, len(depths) = {stages}, got {num_layers!r}: "
                f"set depths and num_heads, one int per stage, e.g. depths={[2] * count}, "
                f"num_heads={[3 * 2**stage for stage in range(count)]}"
            )
        if hidden_size is not None and hidden_size != self.hidden_size:
            how = (
                f"embed_dim={hidden_size // growth} gives it with {stages} stages"
                if isinstance(hidden_size, int) and hidden_size % growth == 0
                else f"it is embed_dim * {growth} with {stages} stages"
            )
            raise ValueError(
                f"Swin4DConfig.hidden_size is derived, embed_dim * channel_multiplier ** (len(depths) - 1) = "
                f"{self.hidden_size}, got {hidden_size!r}: set embed_dim instead ({how})"
            )

    def validate_architecture(self):
        super().validate_architecture()
        if len(self.image_size) != 3 or len(self.patch_size) != 4 or len(self.window_size) != 4:
            raise ValueError(
                f"image_size needs 3 entries (H, W, D), patch_size and window_size 4 (H, W, D, T); got "
                f"{self.image_size}, {self.patch_size}, {self.window_size}"
            )
        check_at_least(self, 1, "patch_size", "window_size", "image_size", "depths", "num_frames")
        if len(self.num_heads) != len(self.depths):
            raise ValueError(f"num_heads ({self.num_heads}) needs one entry per stage of depths ({self.depths})")
        if self.first_window_size is not None and (len(self.first_window_size) != 4 or min(self.first_window_size) < 1):
            raise ValueError(f"first_window_size needs 4 entries >= 1 (H, W, D, T); got {self.first_window_size}")
        check_at_least(self, 1, "channel_multiplier")
        if self.global_attention_time_window is not None and self.global_attention_time_window < 1:
            raise ValueError(f"global_attention_time_window must be >= 1, got {self.global_attention_time_window}")
        if self.shifted_window_mask_value is not None and not -math.inf < self.shifted_window_mask_value <= 0:
            raise ValueError(
                f"shifted_window_mask_value must be None or a finite number <= 0, got {self.shifted_window_mask_value}"
            )
        for name, allowed in (
            ("position_embedding", SWIN4D_POSITION_EMBEDDINGS),
            ("window_padding", SWIN4D_WINDOW_PADDINGS),
        ):
            check_choice(self, name, allowed)
        for stage, heads in enumerate(self.num_heads):
            dim = self.stage_dim(stage)
            if dim % heads:
                raise ValueError(f"stage {stage}: features {dim} are not a multiple of num_heads {heads}")

    def stage_dim(self, stage: int) -> int:
        """Token features of a stage: `embed_dim * channel_multiplier ** stage`."""
        return int(self.embed_dim * self.channel_multiplier**stage)

    @classmethod
    def from_swift(cls, swift_arguments: dict, **overrides) -> Swin4DConfig:
        """The config computing exactly as SwiFT's `SwinTransformer4D(**swift_arguments)` (eval mode), with
        `overrides` (our field names) on top.

        `swift_arguments` are its constructor's: `img_size` (H, W, D, T), `in_chans`, `embed_dim`, `window_size`,
        `first_window_size`, `patch_size`, `depths`, `num_heads`, and optionally `mlp_ratio` (4.0), `qkv_bias`
        (True), `drop_rate`, `attn_drop_rate` (0.0), `patch_norm` (False), `c_multiplier` (2),
        `last_layer_full_MSA` (False), `spatial_dims` (4 only), `downsample` ("mergingv2" only). `drop_path_rate`,
        `use_checkpoint`, `to_float` and `num_classes` are accepted and ignored (no stochastic depth here).
        """
        arguments = dict(swift_arguments)
        for name in SWIFT_IGNORED_ARGUMENTS:
            arguments.pop(name, None)
        if arguments.pop("spatial_dims", 4) != 4 or arguments.pop("downsample", "mergingv2") != "mergingv2":
            raise ValueError("SwiFT arguments: only spatial_dims=4 and downsample='mergingv2' exist in SwiFT")
        try:
            img_size = list(arguments.pop("img_size"))
            values = dict(
                num_channels=int(arguments.pop("in_chans")),
                embed_dim=int(arguments.pop("embed_dim")),
                window_size=list(arguments.pop("window_size")),
                first_window_size=list(arguments.pop("first_window_size")),
                patch_size=list(arguments.pop("patch_size")),
                depths=list(arguments.pop("depths")),
                num_heads=list(arguments.pop("num_heads")),
            )
        except KeyError as error:
            raise ValueError(f"SwiFT arguments: {error.args[0]} is required") from None
        if len(img_size) != 4:
            raise ValueError(f"SwiFT img_size needs 4 entries (H, W, D, T), got {img_size}")
        values.update(
            image_size=img_size[:3],
            num_frames=int(img_size[3]),
            mlp_ratio=float(arguments.pop("mlp_ratio", 4.0)),
            qkv_bias=bool(arguments.pop("qkv_bias", True)),
            hidden_dropout_prob=float(arguments.pop("drop_rate", 0.0)),
            attention_probs_dropout_prob=float(arguments.pop("attn_drop_rate", 0.0)),
            channel_multiplier=int(arguments.pop("c_multiplier", 2)),
        )
        full_attention = bool(arguments.pop("last_layer_full_MSA", False))
        values.update(
            SWIFT_OPTIONS,
            patch_norm=bool(arguments.pop("patch_norm", False)),
            global_attention_last_stage=full_attention,
            global_attention_time_window=int(values["window_size"][3]) if full_attention else None,
        )
        if arguments:
            raise ValueError(f"SwiFT arguments not known: {sorted(arguments)}")
        values.update(overrides)
        return cls(**values)


def _int_list(label: str, name: str, value) -> list[int]:
    """`value` as a list of ints, or a one-line ValueError naming the field, what one entry is and an example."""
    entries = list(value) if isinstance(value, (list, tuple)) else None
    if entries is None or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in entries):
        meaning, example = SWIN4D_LIST_FIELDS[name]
        raise ValueError(
            f"{label} expects a list of ints ({meaning}), e.g. {name}={example}; got {value!r} ({type(value).__name__})"
        )
    return [int(v) for v in entries]


__all__ = ["SWIFT_OPTIONS", "Swin4DConfig"]
