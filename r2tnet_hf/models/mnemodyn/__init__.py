"""The `mnemodyn` family, imported on first use: importing its configuration imports no model code."""

from ...utils import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration_mnemodyn": ("MnemoDynConfig",),
        ".modeling_mnemodyn": (
            "MnemoDynForPretraining",
            "MnemoDynModel",
            "MnemoDynPreTrainedModel",
            "MnemoDynPretrainingOutput",
        ),
    },
)
