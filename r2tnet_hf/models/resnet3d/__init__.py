"""The `resnet3d` family, imported on first use: importing its configuration imports no model code."""

from ...utils import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration_resnet3d": ("ResNet3DConfig",),
        ".modeling_resnet3d": (
            "ResNet3DModel",
            "ResNet3DPreTrainedModel",
        ),
    },
)
