"""ConnectomeTransformer configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..config_checks import check_at_least, check_multiple

# Each scan becomes a V × V matrix and the readout has V · readout_size · hidden_size weights: dense data
# (grayordinates, V = 91,282) must be parcellated first.
MAX_READOUT_PARAMETERS = 50_000_000


@strict
class ConnectomeTransformerConfig(PreTrainedConfig):
    r"""
    Configuration of [`ConnectomeTransformerModel`], a transformer whose tokens are the ROIs of a parcellated series
    `(batch_size, num_rois, num_timepoints)`, each carrying its row of the scan's functional connectivity.

    Args:
        num_rois (`int`, *optional*, defaults to 400):
            Number of regions (V). The model builds a V × V correlation matrix per scan, so grayordinate data must be
            parcellated first (`r2tnet convert --atlas`).
        embed_dim (`int`, *optional*, defaults to 128):
            Width of the ROI tokens (the transformer's feature size). At least `num_rois` lets the first projection
            keep a whole connectivity row; narrower tokens lost phenotype information in our experiments.
        num_hidden_layers (`int`, *optional*, defaults to 2):
            Pre-norm transformer blocks over the ROI tokens (0 gives a linear map of connectivity plus a layer norm).
        num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads per block; must divide `embed_dim`.
        intermediate_size (`int`, *optional*, defaults to 512):
            Hidden size of the MLP in each block.
        readout_size (`int`, *optional*, defaults to 32):
            Features each ROI token keeps for the readout: the `num_rois * readout_size` values of a scan are
            concatenated in ROI order and mapped to `hidden_size`. A mean over ROI tokens would discard which region
            is which, the information that identifies a person.
        hidden_size (`int`, *optional*, defaults to 1024):
            The pooled feature size (the readout's output), read by R2T-Net's projection head.
        fisher_z (`bool`, *optional*, defaults to `True`):
            Fisher z-transform (arctanh) the correlations, as the FC fingerprinting baseline does.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            MLP activation, any key of `transformers.activations.ACT2FN`.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the embedding, the attention output and the MLP.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the layer norms.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Bias on the query, key and value projections.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal initialisation of linear layers and ROI embeddings.
        check_finite_inputs (`bool`, *optional*, defaults to `True`):
            Refuse `fmri_values` with NaN or Inf in real (unmasked) frames, with an `FmriInputError`, instead of
            returning a NaN output. One pass over the input; turn it off for speed when the data are checked already.

    Example:
        >>> from r2tnet_hf import ConnectomeTransformerConfig, ConnectomeTransformerModel
        >>> model = ConnectomeTransformerModel(ConnectomeTransformerConfig(num_rois=333))  # Gordon-333
    """

    model_type = "connectome_transformer"

    num_rois: int = 400
    embed_dim: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 512
    readout_size: int = 32
    hidden_size: int = 1024
    fisher_z: bool = True
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    initializer_range: float = 0.02
    check_finite_inputs: bool = True

    def validate_architecture(self):
        super().validate_architecture()
        check_at_least(self, 1, "embed_dim", "num_attention_heads", "intermediate_size", "readout_size", "hidden_size")
        check_at_least(self, 2, "num_rois")  # a connectivity needs two regions
        check_at_least(self, 0, "num_hidden_layers")
        check_multiple(self, "embed_dim", "num_attention_heads")
        readout = self.num_rois * self.readout_size * self.hidden_size
        if readout > MAX_READOUT_PARAMETERS:
            raise ValueError(
                f"A readout for num_rois={self.num_rois} would have {readout:,} weights (num_rois × readout_size × "
                f"hidden_size); parcellate dense data first, or lower readout_size or hidden_size"
            )


__all__ = ["ConnectomeTransformerConfig"]
