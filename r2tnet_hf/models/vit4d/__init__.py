from .configuration_vit4d import Vit4DConfig
from .modeling_vit4d import Vit4DModel, Vit4DPreTrainedModel

__all__ = ["Vit4DConfig", "Vit4DModel", "Vit4DPreTrainedModel"]
