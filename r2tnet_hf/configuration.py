"""Facade: every configuration class of the package."""

from .models.mnemodyn.configuration_mnemodyn import MnemoDynConfig
from .models.r2tnet.configuration_r2tnet import R2TNetConfig
from .models.roi_transformer.configuration_roi_transformer import RoiTransformerConfig

__all__ = ["MnemoDynConfig", "R2TNetConfig", "RoiTransformerConfig"]
