from .configuration_r2tnet import R2TNetConfig
from .modeling_r2tnet import (
    R2TNetContrastiveOutput,
    R2TNetForContrastivePretraining,
    R2TNetForPhenotypePrediction,
    R2TNetModel,
    R2TNetOutput,
    R2TNetPhenotypeOutput,
    R2TNetPreTrainedModel,
)

__all__ = [
    "R2TNetConfig",
    "R2TNetContrastiveOutput",
    "R2TNetForContrastivePretraining",
    "R2TNetForPhenotypePrediction",
    "R2TNetModel",
    "R2TNetOutput",
    "R2TNetPhenotypeOutput",
    "R2TNetPreTrainedModel",
]
