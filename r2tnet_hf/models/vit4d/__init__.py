"""The `vit4d` family, imported on first use: importing its configuration imports no model code."""

from ...utils import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration_vit4d": ("Vit4DConfig",),
        ".modeling_vit4d": (
            "Vit4DModel",
            "Vit4DPreTrainedModel",
        ),
    },
)
