"""Facade: every model class of the package."""

from .models.cnn_gru.modeling_cnn_gru import CnnGruModel, CnnGruPreTrainedModel
from .models.common import FmriBackboneOutput
from .models.connectome_transformer.modeling_connectome_transformer import (
    ConnectomeTransformerModel,
    ConnectomeTransformerPreTrainedModel,
)
from .models.mnemodyn.modeling_mnemodyn import (
    MnemoDynForPretraining,
    MnemoDynModel,
    MnemoDynPreTrainedModel,
    MnemoDynPretrainingOutput,
)
from .models.perceiver.modeling_perceiver import PerceiverFmriModel, PerceiverFmriPreTrainedModel
from .models.r2tnet.modeling_r2tnet import (
    R2TNetContrastiveOutput,
    R2TNetForContrastivePretraining,
    R2TNetForPhenotypePrediction,
    R2TNetModel,
    R2TNetOutput,
    R2TNetPhenotypeOutput,
    R2TNetPreTrainedModel,
)
from .models.resnet3d.modeling_resnet3d import ResNet3DModel, ResNet3DPreTrainedModel
from .models.roi_transformer.modeling_roi_transformer import RoiTransformerModel, RoiTransformerPreTrainedModel
from .models.swin4d.modeling_swin4d import Swin4DModel, Swin4DPreTrainedModel
from .models.tangent_connectome.modeling_tangent_connectome import (
    TangentConnectomeModel,
    TangentConnectomePreTrainedModel,
)
from .models.vit4d.modeling_vit4d import Vit4DModel, Vit4DPreTrainedModel

__all__ = [
    "CnnGruModel",
    "CnnGruPreTrainedModel",
    "ConnectomeTransformerModel",
    "ConnectomeTransformerPreTrainedModel",
    "FmriBackboneOutput",
    "MnemoDynForPretraining",
    "MnemoDynModel",
    "MnemoDynPreTrainedModel",
    "MnemoDynPretrainingOutput",
    "PerceiverFmriModel",
    "PerceiverFmriPreTrainedModel",
    "R2TNetContrastiveOutput",
    "R2TNetForContrastivePretraining",
    "R2TNetForPhenotypePrediction",
    "R2TNetModel",
    "R2TNetOutput",
    "R2TNetPhenotypeOutput",
    "R2TNetPreTrainedModel",
    "ResNet3DModel",
    "ResNet3DPreTrainedModel",
    "RoiTransformerModel",
    "RoiTransformerPreTrainedModel",
    "Swin4DModel",
    "Swin4DPreTrainedModel",
    "TangentConnectomeModel",
    "TangentConnectomePreTrainedModel",
    "Vit4DModel",
    "Vit4DPreTrainedModel",
]
