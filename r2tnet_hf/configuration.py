"""Facade: every configuration class of the package."""

from .models.cnn_gru.configuration_cnn_gru import CnnGruConfig
from .models.connectome_transformer.configuration_connectome_transformer import ConnectomeTransformerConfig
from .models.mnemodyn.configuration_mnemodyn import MnemoDynConfig
from .models.perceiver.configuration_perceiver import PerceiverFmriConfig
from .models.r2tnet.configuration_r2tnet import R2TNetConfig
from .models.resnet3d.configuration_resnet3d import ResNet3DConfig
from .models.roi_transformer.configuration_roi_transformer import RoiTransformerConfig
from .models.swin4d.configuration_swin4d import Swin4DConfig
from .models.tangent_connectome.configuration_tangent_connectome import TangentConnectomeConfig
from .models.vit4d.configuration_vit4d import Vit4DConfig

__all__ = [
    "CnnGruConfig",
    "ConnectomeTransformerConfig",
    "MnemoDynConfig",
    "PerceiverFmriConfig",
    "R2TNetConfig",
    "ResNet3DConfig",
    "RoiTransformerConfig",
    "Swin4DConfig",
    "TangentConnectomeConfig",
    "Vit4DConfig",
]
