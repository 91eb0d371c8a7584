"""The `connectome_transformer` family, imported on first use: importing its configuration imports no model code."""

from ...utils import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration_connectome_transformer": ("ConnectomeTransformerConfig",),
        ".modeling_connectome_transformer": (
            "ConnectomeTransformerModel",
            "ConnectomeTransformerPreTrainedModel",
            "masked_correlation",
        ),
    },
)
