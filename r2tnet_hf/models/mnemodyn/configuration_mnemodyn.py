"""MnemoDyn configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..config_checks import check_at_least, check_choice

MNEMODYN_OBJECTIVES = ("reconstruct", "denoise", "masked", "jepa")
MNEMODYN_SPLINES = ("hermite", "linear")
MNEMODYN_TIME_AXES = ("seconds", "unit_interval")
MNEMODYN_PADDINGS = ("symmetric", "zeros")
MNEMODYN_POOLINGS = ("mean", "last")

# The reference's two sets of defaults (MnemoDyn_Draft, coe/light/model): `main.py`'s argparse defaults and the
# flags of `script/orion.sh`. Both are architectures only; what the reference does wrong is fixed by the fields
# `time_axis` (and `padding`, `pooling`) whichever set is used, and `MnemoDynConfig.from_reference` sets those to
# the reference's behaviour too.
REFERENCE_DEFAULTS = {
    "main.py": dict(
        num_rois=333, layer_output_sizes=[333, 333, 333, 333], num_frames=1200, wavelet="db2", wavelet_levels=6,
        field_hidden_size=150, latent_size=350, field_rank=5, num_dense_layers=32, wavelet_kernel_size=3,
        wavelet_segments=5, use_residual=False, hidden_act="tanh", spline="hermite",
    ),
    "orion.sh": dict(
        num_rois=450, layer_output_sizes=[450, 450, 450, 450], num_frames=490, wavelet="db2", wavelet_levels=5,
        field_hidden_size=100, latent_size=300, field_rank=3, num_dense_layers=4, wavelet_kernel_size=5,
        wavelet_segments=4, use_residual=True, hidden_act="tanh", spline="hermite",
    ),
}  # fmt: skip


@strict
class MnemoDynConfig(PreTrainedConfig):
    r"""
    Configuration of [`MnemoDynModel`] and [`MnemoDynForPretraining`]: the reference's stacked `ORionSeq` layers (a
    CDE integrand `f(x_t) · dX_t/dt` mapped by a learned multi-resolution wavelet operator in time) for parcellated
    fMRI `(batch_size, num_rois, num_timepoints)`. The defaults are the reference's `script/orion.sh` (Schaefer-400
    + Tian S3, 450 ROIs, windows of 490 frames); `MnemoDynConfig.from_reference("main.py")` gives its `main.py` set.

    Reference names in brackets.

    Args:
        num_rois (`int`, *optional*, defaults to 450): ROIs V of the input [`D`].
        layer_output_sizes (`list[int]`, *optional*): output channels of each layer [`D_out`], one entry per layer;
            layer i + 1 reads layer i's output. Defaults to `num_rois` for every layer. `hidden_size` (the size of
            `last_hidden_state` and of the pooled feature) is the last entry.
        num_hidden_layers (`int`, *optional*, defaults to 4): layers, when `layer_output_sizes` is not given.
        num_frames (`int`, *optional*, defaults to 490): frames per window [`original_length`]. The coarsest-level
            dense layers and the segment convolutions have weights per position, so the model works on windows of
            exactly this length: a longer scan is cut into consecutive windows, a window past the scan's end is
            filled by `padding`, and the outputs are put back together and masked.
        latent_size (`int`, *optional*, defaults to 300): channels k of the field output `v_t` that the wavelet operator
            transforms [`dim_k`].
        field_hidden_size (`int`, *optional*, defaults to 100): width of the field MLP's first layer [`dim_d`].
        field_rank (`int`, *optional*, defaults to 3): its bottleneck [`h_rank`].
        num_dense_layers (`int`, *optional*, defaults to 4): per-channel dense layers over time on the coarsest
            approximation [`K_dense`].
        wavelet (`str`, *optional*, defaults to `"db2"`): an orthogonal PyWavelets wavelet [`wave`].
        wavelet_levels (`int`, *optional*, defaults to 5): levels of the periodised DWT [`n_levels`].
        wavelet_kernel_size (`int`, *optional*, defaults to 5): kernel of the full-channel convolutions at each
            level [`nb`], odd.
        wavelet_segments (`int`, *optional*, defaults to 4): time segments with their own convolution weights at each
            level [`num_sparse_LC`].
        hidden_act (`str`, *optional*, defaults to `"tanh"`): activation [`nonlinearity`]: tanh, relu, gelu or silu.
        use_residual (`bool`, *optional*, defaults to `True`): add each layer's input to its output where the sizes
            agree [`use_residual`].
        channel_scale (`bool`, *optional*, defaults to `False`): a learned scale per output channel [`scale`].
        linear_bias (`bool`, *optional*, defaults to `True`): biases of the linear layers [`linear_bias`].
        spline (`str`, *optional*, defaults to `"hermite"`): the first layer's control path [`interpol`]: `"hermite"`
            or `"linear"`; later layers use linear interpolation of their input, as in the reference. With
            `time_axis="seconds"` both give the same dX/dt at the frames (see `controls`).
        time_axis (`str`, *optional*, defaults to `"seconds"`): `"seconds"` places frame i at `i · TR` and takes dX/dt
            per second; `"unit_interval"` reproduces the reference's frame times `i · duration / num_frames` and its
            torchcde calls, for imported weights (see `controls` for what that gets wrong).
        duration (`float`, *optional*, defaults to 1.0): `unit_interval` only: the window's span [`duration`].
        padding (`str`, *optional*, defaults to `"symmetric"`): how a window's frames past the scan's end are filled:
            `"symmetric"` (the scan mirrored at its last frame) or `"zeros"`. Either way they depend on the scan alone,
            so a scan's output does not depend on what it is batched with.
        pooling (`str`, *optional*, defaults to `"mean"`): `pooler_output` is the mean over real frames, or the
            `"last"` real frame (the reference's probes read `U[:, -1, :]`).
        contraction_chunk_size (`int`, *optional*, defaults to 64): frames per chunk of the field contraction (the
            `(batch, time, V, k)` field is never built whole).
        objective (`str`, *optional*, defaults to `"masked"`): pretraining objective of [`MnemoDynForPretraining`]:
            `"reconstruct"`, `"denoise"`, `"masked"` or `"jepa"`.
        reconstruction_bottleneck (`int`, *optional*, defaults to 32): `reconstruct`: the reconstruction is decoded
            from this many features per frame, fewer than `num_rois`, so that the identity cannot solve it.
        noise_std (`float`, *optional*, defaults to 0.5): `denoise`: Gaussian noise on the (z-scored) input.
        mask_ratio (`float`, *optional*, defaults to 0.4): `masked`: share of the ROI × time blocks masked.
        mask_roi_block (`int`, *optional*, defaults to 8): `masked`: ROIs per block.
        mask_time_block (`int`, *optional*, defaults to 8): `masked`: frames per block.
        jepa_roi_ratio (`float`, *optional*, defaults to 0.3): `jepa`: share of ROIs in a cross-ROI target block.
        jepa_time_ratio (`float`, *optional*, defaults to 0.3): `jepa`: share of frames in a cross-time target block.
        jepa_predictor_hidden_size (`int`, *optional*, defaults to 128): `jepa`: predictor width.
        jepa_predictor_layers (`int`, *optional*, defaults to 2): `jepa`: predictor blocks.
        jepa_momentum_start (`float`, *optional*, defaults to 0.996): `jepa`: EMA momentum at the start.
        jepa_momentum_end (`float`, *optional*, defaults to 1.0): `jepa`: EMA momentum at the end (linear in progress).
        layer_norm_eps (`float`, *optional*, defaults to 1e-6): epsilon of the JEPA predictor's layer norms.
        check_finite_inputs (`bool`, *optional*, defaults to `True`):
            Refuse `fmri_values` with NaN or Inf in real (unmasked) frames, with an `FmriInputError`, instead of
            returning a NaN output. One pass over the input; turn it off for speed when the data are checked already.

    Example:
        >>> from r2tnet_hf import MnemoDynConfig, MnemoDynForPretraining
        >>> config = MnemoDynConfig.from_reference("main.py", objective="masked")
        >>> model = MnemoDynForPretraining(config)
    """

    model_type = "mnemodyn"

    num_rois: int = 450
    layer_output_sizes: list[int] | tuple[int, ...] | None = None
    num_hidden_layers: int = 4
    num_frames: int = 490
    latent_size: int = 300
    field_hidden_size: int = 100
    field_rank: int = 3
    num_dense_layers: int = 4
    wavelet: str = "db2"
    wavelet_levels: int = 5
    wavelet_kernel_size: int = 5
    wavelet_segments: int = 4
    hidden_act: str = "tanh"
    use_residual: bool = True
    channel_scale: bool = False
    linear_bias: bool = True
    spline: str = "hermite"
    time_axis: str = "seconds"
    duration: float = 1.0
    padding: str = "symmetric"
    pooling: str = "mean"
    contraction_chunk_size: int = 64
    objective: str = "masked"
    reconstruction_bottleneck: int = 32
    noise_std: float = 0.5
    mask_ratio: float = 0.4
    mask_roi_block: int = 8
    mask_time_block: int = 8
    jepa_roi_ratio: float = 0.3
    jepa_time_ratio: float = 0.3
    jepa_predictor_hidden_size: int = 128
    jepa_predictor_layers: int = 2
    jepa_momentum_start: float = 0.996
    jepa_momentum_end: float = 1.0
    layer_norm_eps: float = 1e-6
    check_finite_inputs: bool = True

    def __post_init__(self, **kwargs):
        if self.layer_output_sizes is None:
            self.layer_output_sizes = [self.num_rois] * self.num_hidden_layers
        self.layer_output_sizes = [int(size) for size in self.layer_output_sizes]
        self.num_hidden_layers = len(self.layer_output_sizes)
        # The size of last_hidden_state and of the pooled feature, read by R2TNetConfig.
        self.hidden_size = self.layer_output_sizes[-1] if self.layer_output_sizes else self.num_rois
        kwargs.pop("hidden_size", None)
        super().__post_init__(**kwargs)

    @classmethod
    def from_reference(cls, name: str = "orion.sh", **overrides) -> MnemoDynConfig:
        """The reference's `main.py` or `script/orion.sh` architecture, computing exactly as the reference does
        (`time_axis="unit_interval"`, zero padding, last-frame pooling), with `overrides` on top."""
        if name not in REFERENCE_DEFAULTS:
            raise ValueError(f"reference defaults are {sorted(REFERENCE_DEFAULTS)}, got {name!r}")
        values = dict(REFERENCE_DEFAULTS[name], time_axis="unit_interval", padding="zeros", pooling="last")
        values.update(overrides)
        return cls(**values)

    def validate_architecture(self):
        super().validate_architecture()
        check_at_least(
            self,
            1,
            "num_rois",
            "num_hidden_layers",
            "num_frames",
            "latent_size",
            "field_hidden_size",
            "field_rank",
            "wavelet_levels",
            "wavelet_segments",
            "contraction_chunk_size",
            "reconstruction_bottleneck",
            "mask_roi_block",
            "mask_time_block",
            "jepa_predictor_hidden_size",
            "jepa_predictor_layers",
        )
        if self.num_dense_layers < 0 or min(self.layer_output_sizes) < 1:
            raise ValueError("num_dense_layers must be >= 0 and every layer_output_sizes entry >= 1")
        if self.wavelet_kernel_size < 1 or self.wavelet_kernel_size % 2 == 0:
            raise ValueError(f"wavelet_kernel_size must be odd and >= 1, got {self.wavelet_kernel_size}")
        lengths = self.level_lengths
        if lengths[-1] < 1 or any(length < self.wavelet_segments for length in lengths):
            raise ValueError(
                f"num_frames {self.num_frames} gives level lengths {lengths}: each needs at least wavelet_segments "
                f"= {self.wavelet_segments} coefficients"
            )
        for name, allowed in (
            ("spline", MNEMODYN_SPLINES),
            ("time_axis", MNEMODYN_TIME_AXES),
            ("padding", MNEMODYN_PADDINGS),
            ("pooling", MNEMODYN_POOLINGS),
            ("objective", MNEMODYN_OBJECTIVES),
            ("hidden_act", ("tanh", "relu", "gelu", "silu")),
        ):
            check_choice(self, name, allowed)
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0, got {self.duration}")
        if self.objective == "reconstruct" and self.reconstruction_bottleneck >= self.num_rois:
            raise ValueError(
                f"reconstruction_bottleneck ({self.reconstruction_bottleneck}) must be below num_rois "
                f"({self.num_rois}), or the identity solves the reconstruct objective"
            )
        for name in ("mask_ratio", "jepa_roi_ratio", "jepa_time_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"MnemoDynConfig.{name} must be in (0, 1), got {getattr(self, name)}")
        if self.noise_std < 0:
            raise ValueError("noise_std must be >= 0")
        if not 0.0 <= self.jepa_momentum_start <= self.jepa_momentum_end <= 1.0:
            raise ValueError(
                "need 0 <= jepa_momentum_start <= jepa_momentum_end <= 1, got "
                f"{self.jepa_momentum_start} and {self.jepa_momentum_end}"
            )

    @property
    def level_lengths(self) -> list[int]:
        """Coefficients per level of a `num_frames` window, finest first (each level halves, rounding up)."""
        lengths, length = [], self.num_frames
        for _ in range(self.wavelet_levels):
            length = (length + 1) // 2
            lengths.append(length)
        return lengths


__all__ = ["MnemoDynConfig"]
