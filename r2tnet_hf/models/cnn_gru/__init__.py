from .configuration_cnn_gru import CnnGruConfig
from .modeling_cnn_gru import CnnGruModel, CnnGruPreTrainedModel

__all__ = ["CnnGruConfig", "CnnGruModel", "CnnGruPreTrainedModel"]
