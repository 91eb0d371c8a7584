"""TangentConnectome configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..config_checks import check_at_least, check_choice


@strict
class TangentConnectomeConfig(PreTrainedConfig):
    r"""
    Configuration of [`TangentConnectomeModel`]: tangent-space functional connectivity at a reference fitted on
    training subjects, with the within-subject (nuisance) directions of the training subjects shrunk, and a learned
    correction that starts at the identity.

    Args:
        num_rois (`int`, *optional*, defaults to 400):
            Number of regions (V). The features are the V(V−1)/2 entries below the diagonal of the tangent matrix,
            so `hidden_size` is V(V−1)/2 (set from `num_rois`).
        hidden_size (`int`, *optional*):
            V(V−1)/2; given only to check it.
        shrinkage_target (`str`, *optional*, defaults to `"reference"`):
            `"reference"`: the Ledoit–Wolf covariance of the whitened series, i.e. each scan shrunk toward the
            training reference (better from short scans); `"identity"`: the Ledoit–Wolf covariance whitened
            afterwards, exactly the tangent-space baseline.
        within_subject_components (`int`, *optional*, defaults to 64):
            Most directions of within-subject variation (differences between one person's scans) kept from the
            training subjects; each is shrunk by `sqrt(r · σ² / (λ + r · σ²))` with λ its variance, σ² the mean
            variance of a feature over the training scans and r `within_subject_regularization`. 0 turns it off.
        within_subject_regularization (`float`, *optional*, defaults to 1.0):
            r above: large values shrink little, small ones project the directions out.
        learn_roi_gains (`bool`, *optional*, defaults to `True`):
            A learned log-gain per ROI (feature (i, j) is scaled by exp(a_i + a_j)), starting at 0.
        learn_within_subject_scales (`bool`, *optional*, defaults to `True`):
            A learned log-scale on each within-subject direction's shrinkage, starting at 0.
        anchor_weight (`float`, *optional*, defaults to 1.0):
            Weight of the penalty `‖a‖² + ‖log-scales‖²` that pulls the learned correction toward the fitted start
            (`regularization_loss`, added to the NT-Xent loss by R2T-Net's contrastive head).
        eigenvalue_floor (`float`, *optional*, defaults to 1e-6):
            Eigenvalues of the whitened covariance are floored at this fraction of their mean before the logarithm.
        check_finite_inputs (`bool`, *optional*, defaults to `True`):
            Refuse `fmri_values` with NaN or Inf in real (unmasked) frames, with an `FmriInputError`, instead of
            returning a NaN output. One pass over the input; turn it off for speed when the data are checked already.

    Example:
        >>> from r2tnet_hf import TangentConnectomeConfig
        >>> TangentConnectomeConfig(num_rois=119).hidden_size
        7021
    """

    model_type = "tangent_connectome"

    num_rois: int = 400
    hidden_size: int | None = None
    shrinkage_target: str = "reference"
    within_subject_components: int = 64
    within_subject_regularization: float | int = 1.0
    learn_roi_gains: bool = True
    learn_within_subject_scales: bool = True
    anchor_weight: float | int = 1.0
    eigenvalue_floor: float = 1e-6
    check_finite_inputs: bool = True

    def __post_init__(self, **kwargs):
        if self.hidden_size is None:
            self.hidden_size = self.num_rois * (self.num_rois - 1) // 2
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        super().validate_architecture()
        check_at_least(self, 2, "num_rois")
        expected = self.num_rois * (self.num_rois - 1) // 2
        if self.hidden_size != expected:
            raise ValueError(
                f"TangentConnectomeConfig.hidden_size is num_rois·(num_rois−1)/2 = {expected} for {self.num_rois} "
                f"ROIs, got {self.hidden_size}"
            )
        check_choice(self, "shrinkage_target", ("reference", "identity"))
        check_at_least(self, 0, "within_subject_components")
        if not self.within_subject_regularization > 0:
            raise ValueError(f"within_subject_regularization must be > 0, got {self.within_subject_regularization}")
        if self.anchor_weight < 0:
            raise ValueError(f"anchor_weight must be >= 0, got {self.anchor_weight}")
        if not 0 < self.eigenvalue_floor < 1:
            raise ValueError(f"eigenvalue_floor must be in (0, 1), got {self.eigenvalue_floor}")


__all__ = ["TangentConnectomeConfig"]
