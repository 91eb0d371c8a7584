from .configuration_resnet3d import ResNet3DConfig
from .modeling_resnet3d import ResNet3DModel, ResNet3DPreTrainedModel

__all__ = ["ResNet3DConfig", "ResNet3DModel", "ResNet3DPreTrainedModel"]
