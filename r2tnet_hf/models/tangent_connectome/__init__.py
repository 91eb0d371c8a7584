from .configuration_tangent_connectome import TangentConnectomeConfig
from .modeling_tangent_connectome import (
    TangentConnectomeModel,
    TangentConnectomePreTrainedModel,
    masked_ledoit_wolf,
    symmetric_log,
)

__all__ = [
    "TangentConnectomeConfig",
    "TangentConnectomeModel",
    "TangentConnectomePreTrainedModel",
    "masked_ledoit_wolf",
    "symmetric_log",
]
