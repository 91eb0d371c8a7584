"""r2tnet_hf: Hugging Face Hub-native fMRI foundation models.

`import r2tnet_hf` registers every config, model and processor with the transformers Auto classes, so that
`AutoConfig`, `AutoModel`, `AutoFeatureExtractor` and `AutoProcessor` resolve them with no `trust_remote_code`.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForPreTraining

from .configuration import (
    CnnGruConfig,
    ConnectomeTransformerConfig,
    MnemoDynConfig,
    PerceiverFmriConfig,
    R2TNetConfig,
    ResNet3DConfig,
    RoiTransformerConfig,
    Swin4DConfig,
    TangentConnectomeConfig,
    Vit4DConfig,
)
from .errors import FmriInputError
from .modeling import (
    CnnGruModel,
    CnnGruPreTrainedModel,
    ConnectomeTransformerModel,
    ConnectomeTransformerPreTrainedModel,
    FmriBackboneOutput,
    MnemoDynForPretraining,
    MnemoDynModel,
    MnemoDynPreTrainedModel,
    MnemoDynPretrainingOutput,
    PerceiverFmriModel,
    PerceiverFmriPreTrainedModel,
    R2TNetContrastiveOutput,
    R2TNetForContrastivePretraining,
    R2TNetForPhenotypePrediction,
    R2TNetModel,
    R2TNetOutput,
    R2TNetPhenotypeOutput,
    R2TNetPreTrainedModel,
    ResNet3DModel,
    ResNet3DPreTrainedModel,
    RoiTransformerModel,
    RoiTransformerPreTrainedModel,
    Swin4DModel,
    Swin4DPreTrainedModel,
    TangentConnectomeModel,
    TangentConnectomePreTrainedModel,
    Vit4DModel,
    Vit4DPreTrainedModel,
)
from .processing import FmriProcessor

__version__ = "0.1.0.dev0"


def _register() -> None:
    pairs = (
        (RoiTransformerConfig, RoiTransformerModel),
        (ConnectomeTransformerConfig, ConnectomeTransformerModel),
        (TangentConnectomeConfig, TangentConnectomeModel),
        (Swin4DConfig, Swin4DModel),
        (Vit4DConfig, Vit4DModel),
        (ResNet3DConfig, ResNet3DModel),
        (CnnGruConfig, CnnGruModel),
        (PerceiverFmriConfig, PerceiverFmriModel),
        (MnemoDynConfig, MnemoDynModel),
        (R2TNetConfig, R2TNetModel),
    )
    for config_class, model_class in pairs:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoFeatureExtractor.register(config_class, FmriProcessor, exist_ok=True)
    AutoModelForPreTraining.register(R2TNetConfig, R2TNetForContrastivePretraining, exist_ok=True)
    AutoModelForPreTraining.register(MnemoDynConfig, MnemoDynForPretraining, exist_ok=True)


_register()

__all__ = [
    "CnnGruConfig",
    "CnnGruModel",
    "CnnGruPreTrainedModel",
    "ConnectomeTransformerConfig",
    "ConnectomeTransformerModel",
    "ConnectomeTransformerPreTrainedModel",
    "FmriBackboneOutput",
    "FmriInputError",
    "FmriProcessor",
    "MnemoDynConfig",
    "MnemoDynForPretraining",
    "MnemoDynModel",
    "MnemoDynPreTrainedModel",
    "MnemoDynPretrainingOutput",
    "PerceiverFmriConfig",
    "PerceiverFmriModel",
    "PerceiverFmriPreTrainedModel",
    "R2TNetConfig",
    "R2TNetContrastiveOutput",
    "R2TNetForContrastivePretraining",
    "R2TNetForPhenotypePrediction",
    "R2TNetModel",
    "R2TNetOutput",
    "R2TNetPhenotypeOutput",
    "R2TNetPreTrainedModel",
    "ResNet3DConfig",
    "ResNet3DModel",
    "ResNet3DPreTrainedModel",
    "RoiTransformerConfig",
    "RoiTransformerModel",
    "RoiTransformerPreTrainedModel",
    "Swin4DConfig",
    "Swin4DModel",
    "Swin4DPreTrainedModel",
    "TangentConnectomeConfig",
    "TangentConnectomeModel",
    "TangentConnectomePreTrainedModel",
    "Vit4DConfig",
    "Vit4DModel",
    "Vit4DPreTrainedModel",
]
