"""The `tangent_connectome` family, imported on first use: importing its configuration imports no model code."""

from ...utils import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration_tangent_connectome": ("TangentConnectomeConfig",),
        ".modeling_tangent_connectome": (
            "TangentConnectomeModel",
            "TangentConnectomePreTrainedModel",
            "masked_ledoit_wolf",
            "symmetric_log",
        ),
    },
)
