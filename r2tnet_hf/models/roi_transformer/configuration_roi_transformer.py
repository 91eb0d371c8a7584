"""RoiTransformer configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..config_checks import check_at_least, check_choice, check_multiple

# Above this many input-stage parameters a dense projection is refused: grayordinate data (V = 91,282) would put
# tens of millions of parameters there, as the R2T-Net reference code does (about 70M).
MAX_DENSE_INPUT_PARAMETERS = 20_000_000


@strict
class RoiTransformerConfig(PreTrainedConfig):
    r"""
    Configuration of [`RoiTransformerModel`], a transformer over temporal patches of a parcellated (or grayordinate)
    fMRI series `(batch_size, num_rois, num_timepoints)`.

    Args:
        num_rois (`int`, *optional*, defaults to 400):
            Number of regions (V): 400 for Schaefer-400, 333 for Gordon, 91282 for CIFTI grayordinates.
        patch_size (`int`, *optional*, defaults to 8):
            Frames per temporal token. Each token is one patch of `patch_size` frames across all ROIs.
        spatial_rank (`int`, *optional*):
            `None` gives a dense input projection of `num_rois * patch_size` values to `hidden_size`. An integer gives
            the factorised projection: a learned spatial basis maps the V ROIs of each frame to `spatial_rank`
            components (`num_rois * spatial_rank` parameters), and a dense layer maps the `spatial_rank * patch_size`
            values of a patch to `hidden_size`. Use it for grayordinates: with V = 91282 and rank 32 the input stage has
            about 2.9M parameters instead of about 187M for the dense one at the default sizes.
        hidden_size (`int`, *optional*, defaults to 256):
            Token feature size.
        num_hidden_layers (`int`, *optional*, defaults to 4):
            Number of pre-norm transformer blocks.
        num_attention_heads (`int`, *optional*, defaults to 8):
            Attention heads per block; must divide `hidden_size`.
        intermediate_size (`int`, *optional*, defaults to 1024):
            Hidden size of the MLP in each block.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            MLP activation, any key of `transformers.activations.ACT2FN`.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the embedding, the attention output and the MLP.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the layer norms.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Whether the query, key and value projections have a bias.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal initialisation of linear layers.
        time_embedding_max_period (`float`, *optional*, defaults to 10000.0):
            Longest period, in seconds, of the sinusoidal time embedding. Token times are in seconds (frame index ×
            `repetition_time`), so scans with different TRs line up.
        pooling (`str`, *optional*, defaults to `"mean"`):
            How token features become the pooled feature: `"mean"` over real tokens, or `"mean_std"` (statistics
            pooling, as in x-vector speaker models: the mean of the output tokens and the standard deviation over time
            of the patch projections, projected back to `hidden_size`), which exposes the second-order structure,
            the stuff of functional connectivity, that identifies a person.
        check_finite_inputs (`bool`, *optional*, defaults to `True`):
            Refuse `fmri_values` with NaN or Inf in real (unmasked) frames, with an `FmriInputError`, instead of
            returning a NaN output. One pass over the input; turn it off for speed when the data are checked already.

    Example:
        >>> from r2tnet_hf import RoiTransformerConfig, RoiTransformerModel
        >>> config = RoiTransformerConfig(num_rois=91282, spatial_rank=32)  # grayordinates
        >>> model = RoiTransformerModel(config)
    """

    model_type = "roi_transformer"

    num_rois: int = 400
    patch_size: int = 8
    spatial_rank: int | None = None
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    initializer_range: float = 0.02
    time_embedding_max_period: float = 10000.0
    pooling: str = "mean"
    check_finite_inputs: bool = True

    def validate_architecture(self):
        super().validate_architecture()
        check_choice(self, "pooling", ("mean", "mean_std"))
        check_at_least(self, 1, "num_rois", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
        check_multiple(self, "hidden_size", "num_attention_heads")
        if self.spatial_rank is not None and self.spatial_rank < 1:
            raise ValueError(f"spatial_rank must be None (dense) or >= 1, got {self.spatial_rank}")
        dense = self.num_rois * self.patch_size * self.hidden_size
        if self.spatial_rank is None and dense > MAX_DENSE_INPUT_PARAMETERS:
            raise ValueError(
                f"A dense input projection for num_rois={self.num_rois} would have {dense:,} parameters; set "
                f"spatial_rank (e.g. 32) for the factorised projection"
            )

    @property
    def num_input_stage_parameters(self) -> int:
        """Parameters of the input projection (weights and biases), without building the model."""
        if self.spatial_rank is None:
            return self.num_rois * self.patch_size * self.hidden_size + self.hidden_size
        return (
            self.num_rois * self.spatial_rank
            + self.spatial_rank * self.patch_size * self.hidden_size
            + self.hidden_size
        )


__all__ = ["RoiTransformerConfig"]
