"""Facade: every configuration class of the package."""

from .models.r2tnet.configuration_r2tnet import R2TNetConfig
from .models.roi_transformer.configuration_roi_transformer import RoiTransformerConfig

__all__ = ["R2TNetConfig", "RoiTransformerConfig"]
