from .configuration_mnemodyn import MnemoDynConfig
from .modeling_mnemodyn import (
    MnemoDynForPretraining,
    MnemoDynModel,
    MnemoDynPreTrainedModel,
    MnemoDynPretrainingOutput,
)

__all__ = [
    "MnemoDynConfig",
    "MnemoDynForPretraining",
    "MnemoDynModel",
    "MnemoDynPreTrainedModel",
    "MnemoDynPretrainingOutput",
]
