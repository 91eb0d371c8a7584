"""R2T-Net configuration: a backbone plus the signature projection and the phenotype head."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ..config_checks import check_at_least


@strict
class R2TNetConfig(PreTrainedConfig):
    r"""
    Configuration of the R2T-Net models: [`R2TNetModel`], [`R2TNetForContrastivePretraining`] and
    [`R2TNetForPhenotypePrediction`].

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of any registered backbone (`connectome_transformer`, `roi_transformer`, ...), resolved through `AutoConfig`; the backbone is
            built with `AutoModel.from_config`. Defaults to `ConnectomeTransformerConfig()`.
        signature_dim (`int`, *optional*, defaults to 2048):
            Size of the brain signature, the L2-normalised output of the projection head.
        projection_hidden_size (`int`, *optional*, defaults to 2048):
            Hidden size of the projection head (backbone features → hidden → signature).
        projection_num_layers (`int`, *optional*, defaults to 2):
            Linear layers in the projection head (1 = a single linear map). 0: no projection, the backbone's pooled
            features are the signature (L2-normalised), and `signature_dim` must equal the backbone's `hidden_size`
            (the tangent-space backbone: a projection to fewer dimensions loses identification, see the README).
        projection_dropout (`float`, *optional*, defaults to 0.0):
            Dropout inside the projection head.
        temperature (`float`, *optional*, defaults to 0.1):
            NT-Xent temperature τ.
        classifier_dropout (`float`, *optional*, defaults to 0.0):
            Dropout before the phenotype head.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation for the head initialisation.
        num_labels (`int`, *optional*, defaults to 2):
            Outputs of the phenotype head (targets for regression, classes for classification).
        problem_type (`str`, *optional*):
            `"regression"`, `"single_label_classification"` or `"multi_label_classification"`; inferred from
            `num_labels` and the label dtype when `None`, as in transformers.

    Example:
        >>> from r2tnet_hf import ConnectomeTransformerConfig, R2TNetConfig, R2TNetModel
        >>> config = R2TNetConfig(backbone_config=ConnectomeTransformerConfig(num_rois=94))
        >>> model = R2TNetModel(config)
    """

    model_type = "r2tnet"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="connectome_transformer"),
    }

    backbone_config: dict | PreTrainedConfig | None = None
    signature_dim: int = 2048
    projection_hidden_size: int = 2048
    projection_num_layers: int = 2
    projection_dropout: float = 0.0
    temperature: float = 0.1
    classifier_dropout: float = 0.0
    initializer_range: float = 0.02

    def validate_architecture(self):
        super().validate_architecture()
        check_at_least(self, 1, "signature_dim", "projection_hidden_size")
        check_at_least(self, 0, "projection_num_layers")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not hasattr(self.backbone_config, "hidden_size"):
            raise ValueError(f"backbone_config ({type(self.backbone_config).__name__}) has no hidden_size")
        if self.projection_num_layers == 0 and self.signature_dim != self.backbone_config.hidden_size:
            raise ValueError(
                f"projection_num_layers=0 makes the backbone's features the signature: signature_dim must be the "
                f"backbone's hidden_size ({self.backbone_config.hidden_size}), got {self.signature_dim}"
            )


__all__ = ["R2TNetConfig"]
