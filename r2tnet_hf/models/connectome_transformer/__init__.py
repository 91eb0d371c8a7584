from .configuration_connectome_transformer import ConnectomeTransformerConfig
from .modeling_connectome_transformer import (
    ConnectomeTransformerModel,
    ConnectomeTransformerPreTrainedModel,
    masked_correlation,
)

__all__ = [
    "ConnectomeTransformerConfig",
    "ConnectomeTransformerModel",
    "ConnectomeTransformerPreTrainedModel",
    "masked_correlation",
]
