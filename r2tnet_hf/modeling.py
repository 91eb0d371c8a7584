"""Facade: every model class of the package."""

from .models.common import FmriBackboneOutput
from .models.mnemodyn.modeling_mnemodyn import (
    MnemoDynForPretraining,
    MnemoDynModel,
    MnemoDynPreTrainedModel,
    MnemoDynPretrainingOutput,
)
from .models.r2tnet.modeling_r2tnet import (
    R2TNetContrastiveOutput,
    R2TNetForContrastivePretraining,
    R2TNetForPhenotypePrediction,
    R2TNetModel,
    R2TNetOutput,
    R2TNetPhenotypeOutput,
    R2TNetPreTrainedModel,
)
from .models.roi_transformer.modeling_roi_transformer import RoiTransformerModel, RoiTransformerPreTrainedModel

__all__ = [
    "FmriBackboneOutput",
    "MnemoDynForPretraining",
    "MnemoDynModel",
    "MnemoDynPreTrainedModel",
    "MnemoDynPretrainingOutput",
    "R2TNetContrastiveOutput",
    "R2TNetForContrastivePretraining",
    "R2TNetForPhenotypePrediction",
    "R2TNetModel",
    "R2TNetOutput",
    "R2TNetPhenotypeOutput",
    "R2TNetPreTrainedModel",
    "RoiTransformerModel",
    "RoiTransformerPreTrainedModel",
]
