from .configuration_perceiver import PerceiverFmriConfig
from .modeling_perceiver import PerceiverFmriModel, PerceiverFmriPreTrainedModel

__all__ = ["PerceiverFmriConfig", "PerceiverFmriModel", "PerceiverFmriPreTrainedModel"]
