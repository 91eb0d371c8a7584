"""MnemoDyn configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

MNEMODYN_OBJECTIVES = ("reconstruct", "denoise", "masked", "jepa")
MNEMODYN_SPLINES = ("cubic_hermite", "linear")


@strict
class MnemoDynConfig(PreTrainedConfig):
    r"""
    Configuration of [`MnemoDynModel`] and [`MnemoDynForPretraining`]: a multi-resolution wavelet operator with
    CDE-style updates driven by the spline derivative of the observed series, for parcellated fMRI
    `(batch_size, num_rois, num_timepoints)`.

    Args:
        num_rois (`int`, *optional*, defaults to 450):
            Number of regions (V): 333 for Gordon, 450 for Schaefer-400 + Tian S3, or any other.
        hidden_size (`int`, *optional*, defaults to 256):
            Width of the state at every frame, and of the pooled output (so an R2T-Net head can read it).
        num_hidden_layers (`int`, *optional*, defaults to 4):
            Stacked MnemoDyn layers (pre-norm wavelet operator and pre-norm CDE update, each residual).
        control_channels (`int`, *optional*, defaults to 64):
            Channels k of the control path. The ROI series is mapped to k channels by a learned linear map before
            the spline is taken (the interpolating spline is linear in its data, so this equals projecting the
            spline of the full ROI series). `None` uses the V ROI series themselves, as the draft did (k = V).
        field_hidden_size (`int`, *optional*, defaults to 128):
            Hidden width d of the vector-field MLP (state → d → rank → state·k).
        field_rank (`int`, *optional*, defaults to 16):
            Bottleneck rank of the vector field.
        spline (`str`, *optional*, defaults to `"cubic_hermite"`):
            Interpolating spline of the control path: `"cubic_hermite"` (tangents from central differences,
            Catmull-Rom) or `"linear"`. Its time axis is in seconds (frame × TR).
        contraction_chunk_size (`int`, *optional*, defaults to 64):
            Frames per chunk of the field contraction. Only `(batch, chunk, rank·k)` is held at once, and it is
            recomputed in the backward pass; the `(batch, time, hidden, k)` field is never built.
        wavelet_levels (`int`, *optional*, defaults to 3):
            Levels of the db2 DWT (periodisation). Inputs are zero-padded (and masked) to a multiple of
            `2**wavelet_levels` frames.
        wavelet_segments (`int`, *optional*, defaults to 4):
            Time segments with their own convolution weights at each level (the draft's region convolutions). A
            coefficient's segment follows its position within the scan's real length.
        wavelet_kernel_size (`int`, *optional*, defaults to 3):
            Kernel of the per-level depthwise temporal convolutions (odd).
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation, any key of `transformers.activations.ACT2FN`.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the layer norms.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of linear layers; each residual branch's output layer uses it divided by
            `sqrt(2 * num_hidden_layers)`.
        time_embedding_max_period (`float`, *optional*, defaults to 10000.0):
            Longest period, in seconds, of the sinusoidal embedding of frame times.
        objective (`str`, *optional*, defaults to `"reconstruct"`):
            Pretraining objective of [`MnemoDynForPretraining`]: `"reconstruct"`, `"denoise"`, `"masked"` or
            `"jepa"`.
        consistency_weight (`float`, *optional*, defaults to 0.0):
            `reconstruct` only: weight of the multi-resolution latent consistency loss (the latents of the scan
            and of its half-rate version, the level-1 wavelet approximation at TR × 2, should agree).
        noise_std (`float`, *optional*, defaults to 0.5):
            `denoise`: standard deviation of the Gaussian noise added to the (z-scored) input.
        mask_ratio (`float`, *optional*, defaults to 0.4):
            `masked`: fraction of the ROI × time blocks that are masked.
        mask_roi_block (`int`, *optional*, defaults to 8):
            `masked`: ROIs per block (ROIs are grouped by a random permutation for each scan).
        mask_time_block (`int`, *optional*, defaults to 8):
            `masked`: frames per block.
        jepa_roi_ratio (`float`, *optional*, defaults to 0.3):
            `jepa`: fraction of ROIs in a cross-ROI target block.
        jepa_time_ratio (`float`, *optional*, defaults to 0.3):
            `jepa`: fraction of the scan's frames in a cross-time target block.
        jepa_predictor_hidden_size (`int`, *optional*, defaults to 128):
            `jepa`: width of the predictor.
        jepa_predictor_layers (`int`, *optional*, defaults to 2):
            `jepa`: residual blocks of the predictor.
        jepa_momentum_start (`float`, *optional*, defaults to 0.996):
            `jepa`: EMA momentum of the target encoder at the start of training.
        jepa_momentum_end (`float`, *optional*, defaults to 1.0):
            `jepa`: EMA momentum at the end; it rises linearly with training progress.

    Example:
        >>> from r2tnet_hf import MnemoDynConfig, MnemoDynForPretraining
        >>> config = MnemoDynConfig(num_rois=333, objective="masked")
        >>> model = MnemoDynForPretraining(config)
    """

    model_type = "mnemodyn"

    num_rois: int = 450
    hidden_size: int = 256
    num_hidden_layers: int = 4
    control_channels: int | None = 64
    field_hidden_size: int = 128
    field_rank: int = 16
    spline: str = "cubic_hermite"
    contraction_chunk_size: int = 64
    wavelet_levels: int = 3
    wavelet_segments: int = 4
    wavelet_kernel_size: int = 3
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    time_embedding_max_period: float = 10000.0
    objective: str = "reconstruct"
    consistency_weight: float = 0.0
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

    def validate_architecture(self):
        super().validate_architecture()
        for name in (
            "num_rois",
            "hidden_size",
            "num_hidden_layers",
            "field_hidden_size",
            "field_rank",
            "contraction_chunk_size",
            "wavelet_levels",
            "wavelet_segments",
            "mask_roi_block",
            "mask_time_block",
            "jepa_predictor_hidden_size",
            "jepa_predictor_layers",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"MnemoDynConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.control_channels is not None and self.control_channels < 1:
            raise ValueError(f"control_channels must be None (the ROI series) or >= 1, got {self.control_channels}")
        if self.wavelet_kernel_size < 1 or self.wavelet_kernel_size % 2 == 0:
            raise ValueError(f"wavelet_kernel_size must be odd and >= 1, got {self.wavelet_kernel_size}")
        if self.spline not in MNEMODYN_SPLINES:
            raise ValueError(f"spline must be one of {MNEMODYN_SPLINES}, got {self.spline!r}")
        if self.objective not in MNEMODYN_OBJECTIVES:
            raise ValueError(f"objective must be one of {MNEMODYN_OBJECTIVES}, got {self.objective!r}")
        for name in ("mask_ratio", "jepa_roi_ratio", "jepa_time_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"MnemoDynConfig.{name} must be in (0, 1), got {getattr(self, name)}")
        if self.noise_std < 0 or self.consistency_weight < 0:
            raise ValueError("noise_std and consistency_weight must be >= 0")
        if not 0.0 <= self.jepa_momentum_start <= self.jepa_momentum_end <= 1.0:
            raise ValueError(
                "need 0 <= jepa_momentum_start <= jepa_momentum_end <= 1, got "
                f"{self.jepa_momentum_start} and {self.jepa_momentum_end}"
            )

    @property
    def num_control_channels(self) -> int:
        """k: channels of the control path (`control_channels`, or V when it is `None`)."""
        return self.num_rois if self.control_channels is None else self.control_channels

    @property
    def frame_multiple(self) -> int:
        """Inputs are padded to a multiple of this many frames (2 ** wavelet_levels)."""
        return 2**self.wavelet_levels


__all__ = ["MnemoDynConfig"]
