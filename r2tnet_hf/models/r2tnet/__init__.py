"""The `r2tnet` family, imported on first use: importing its configuration imports no model code."""

from ...utils import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".configuration_r2tnet": ("R2TNetConfig",),
        ".modeling_r2tnet": (
            "R2TNetContrastiveOutput",
            "R2TNetForContrastivePretraining",
            "R2TNetForPhenotypePrediction",
            "R2TNetModel",
            "R2TNetOutput",
            "R2TNetPhenotypeOutput",
            "R2TNetPreTrainedModel",
        ),
    },
)
