"""The `roi_transformer` family, imported on first use: importing its configuration imports no model code."""

from ...utils import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration_roi_transformer": ("RoiTransformerConfig",),
        ".modeling_roi_transformer": (
            "RoiTransformerModel",
            "RoiTransformerPreTrainedModel",
        ),
    },
)
