from .configuration_roi_transformer import RoiTransformerConfig
from .modeling_roi_transformer import RoiTransformerModel, RoiTransformerPreTrainedModel

__all__ = ["RoiTransformerConfig", "RoiTransformerModel", "RoiTransformerPreTrainedModel"]
