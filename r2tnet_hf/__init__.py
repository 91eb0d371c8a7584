"""r2tnet_hf: Hugging Face Hub-native fMRI foundation models.

`import r2tnet_hf` is cheap: it imports neither torch nor transformers, and a class is imported the first time it is
used (`r2tnet_hf.R2TNetModel`, `from r2tnet_hf import R2TNetModel`), as transformers' own `_LazyModule` does. It also
registers every config, model and processor with the transformers Auto classes: `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining`, `AutoFeatureExtractor` and `AutoProcessor` resolve them with no `trust_remote_code`,
whichever is imported first (`r2tnet_hf._auto` registers them when transformers loads its Auto modules).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import _auto
from .errors import FmriInputError as FmriInputError

__version__ = "0.1.0.dev0"

#: public name -> the module that defines it (the facades `configuration` and `modeling` import every family)
_LAZY = {
    ".configuration": (
        "CnnGruConfig",
        "ConnectomeTransformerConfig",
        "MnemoDynConfig",
        "PerceiverFmriConfig",
        "R2TNetConfig",
        "ResNet3DConfig",
        "RoiTransformerConfig",
        "Swin4DConfig",
        "TangentConnectomeConfig",
        "Vit4DConfig",
    ),
    ".modeling": (
        "CnnGruModel",
        "CnnGruPreTrainedModel",
        "ConnectomeTransformerModel",
        "ConnectomeTransformerPreTrainedModel",
        "FmriBackboneOutput",
        "MnemoDynForPretraining",
        "MnemoDynModel",
        "MnemoDynPreTrainedModel",
        "MnemoDynPretrainingOutput",
        "PerceiverFmriModel",
        "PerceiverFmriPreTrainedModel",
        "R2TNetContrastiveOutput",
        "R2TNetForContrastivePretraining",
        "R2TNetForPhenotypePrediction",
        "R2TNetModel",
        "R2TNetOutput",
        "R2TNetPhenotypeOutput",
        "R2TNetPreTrainedModel",
        "ResNet3DModel",
        "ResNet3DPreTrainedModel",
        "RoiTransformerModel",
        "RoiTransformerPreTrainedModel",
        "Swin4DModel",
        "Swin4DPreTrainedModel",
        "TangentConnectomeModel",
        "TangentConnectomePreTrainedModel",
        "Vit4DModel",
        "Vit4DPreTrainedModel",
    ),
    ".processing": ("FmriProcessor",),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}

__all__ = sorted(["FmriInputError", *_MODULE_OF])


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_auto.install()

if TYPE_CHECKING:
    from .configuration import *  # noqa: F403
    from .modeling import *  # noqa: F403
    from .processing import FmriProcessor as FmriProcessor
