"""The `swin4d` family, imported on first use: importing its configuration imports no model code."""

from ...utils import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration_swin4d": ("Swin4DConfig",),
        ".modeling_swin4d": (
            "Swin4DModel",
            "Swin4DPreTrainedModel",
        ),
    },
)
