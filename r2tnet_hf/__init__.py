"""r2tnet_hf: Hugging Face Hub-native fMRI foundation models.

`import r2tnet_hf` is cheap: it imports neither torch nor transformers, and a class is imported the first time it is
used (`r2tnet_hf.R2TNetModel`, `from r2tnet_hf import R2TNetModel`), as transformers' own `_LazyModule` does. It also
registers every config, model and processor with the transformers Auto classes: `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining`, `AutoFeatureExtractor` and `AutoProcessor` resolve them with no `trust_remote_code`,
whichever is imported first (`r2tnet_hf._auto` registers them when transformers loads its Auto modules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _auto, configuration, modeling
from .errors import FmriInputError as FmriInputError
from .utils import lazy_exports

__version__ = "0.1.0.dev0"

# the facades are lazy too: a name imports its model family on first use
__getattr__, __dir__, _lazy_names = lazy_exports(
    __name__,
    {".configuration": configuration.__all__, ".modeling": modeling.__all__, ".processing": ("FmriProcessor",)},
)
__all__ = sorted(["FmriInputError", *_lazy_names])

_auto.install()

if TYPE_CHECKING:
    from .configuration import *  # noqa: F403
    from .modeling import *  # noqa: F403
    from .processing import FmriProcessor as FmriProcessor
