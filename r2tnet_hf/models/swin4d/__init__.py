from .configuration_swin4d import Swin4DConfig
from .modeling_swin4d import Swin4DModel, Swin4DPreTrainedModel

__all__ = ["Swin4DConfig", "Swin4DModel", "Swin4DPreTrainedModel"]
