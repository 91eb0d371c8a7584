"""r2tnet_hf: Hugging Face Hub-native fMRI foundation models.

`import r2tnet_hf` registers every config, model and processor with the transformers Auto classes, so that
`AutoConfig`, `AutoModel`, `AutoFeatureExtractor` and `AutoProcessor` resolve them with no `trust_remote_code`.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForPreTraining

from .configuration import MnemoDynConfig, R2TNetConfig, RoiTransformerConfig
from .errors import FmriInputError
from .modeling import (
    FmriBackboneOutput,
    MnemoDynForPretraining,
    MnemoDynModel,
    MnemoDynPreTrainedModel,
    MnemoDynPretrainingOutput,
    R2TNetContrastiveOutput,
    R2TNetForContrastivePretraining,
    R2TNetForPhenotypePrediction,
    R2TNetModel,
    R2TNetOutput,
    R2TNetPhenotypeOutput,
    R2TNetPreTrainedModel,
    RoiTransformerModel,
    RoiTransformerPreTrainedModel,
)
from .processing import FmriProcessor

__version__ = "0.1.0.dev0"


def _register() -> None:
    for config_class, model_class in (
        (RoiTransformerConfig, RoiTransformerModel),
        (R2TNetConfig, R2TNetModel),
        (MnemoDynConfig, MnemoDynModel),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoFeatureExtractor.register(config_class, FmriProcessor, exist_ok=True)
    AutoModelForPreTraining.register(R2TNetConfig, R2TNetForContrastivePretraining, exist_ok=True)
    AutoModelForPreTraining.register(MnemoDynConfig, MnemoDynForPretraining, exist_ok=True)


_register()

__all__ = [
    "FmriBackboneOutput",
    "FmriInputError",
    "FmriProcessor",
    "MnemoDynConfig",
    "MnemoDynForPretraining",
    "MnemoDynModel",
    "MnemoDynPreTrainedModel",
    "MnemoDynPretrainingOutput",
    "R2TNetConfig",
    "R2TNetContrastiveOutput",
    "R2TNetForContrastivePretraining",
    "R2TNetForPhenotypePrediction",
    "R2TNetModel",
    "R2TNetOutput",
    "R2TNetPhenotypeOutput",
    "R2TNetPreTrainedModel",
    "RoiTransformerConfig",
    "RoiTransformerModel",
    "RoiTransformerPreTrainedModel",
]
