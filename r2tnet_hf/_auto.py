"""Registration with the transformers Auto classes, done when transformers loads them rather than at import.

`import r2tnet_hf` imports neither torch nor transformers nor any model family, so that the `r2tnet` command starts
in a fraction of a second (`bench/import_time.py`). The Auto classes still know every class of the package before
they can be used: a post-import hook registers them the moment transformers' Auto modules finish loading, or at once
if they are loaded already when `r2tnet_hf` is imported.

- `transformers.models.auto.configuration_auto` loaded: every config class with `AutoConfig` (the config modules
  import only `transformers.configuration_utils`, which that module has loaded already).
- `transformers.models.auto.feature_extraction_auto` loaded: `FmriProcessor` with `AutoFeatureExtractor`, for every
  config.
- `transformers.models.auto.modeling_auto` loaded: every model family with `AutoModel` (and the two pretraining heads
  with `AutoModelForPreTraining`). This imports the model families.

A registration waits while any module of transformers or of this package is half-imported: `modeling_r2tnet` and
`transformers.modeling_layers` import `AutoModel` at their top, so `modeling_auto` can finish loading while they are
still importing, and importing the model families then would be a circular import. Every module of both packages is
watched (its loader wrapped), and the registration runs when the last half-imported one finishes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading

CONFIGURATION_AUTO = "transformers.models.auto.configuration_auto"
FEATURE_EXTRACTION_AUTO = "transformers.models.auto.feature_extraction_auto"
MODELING_AUTO = "transformers.models.auto.modeling_auto"

#: (module, config class, model class, pretraining head or None), relative to `r2tnet_hf.models`.
FAMILIES = (
    ("roi_transformer", "RoiTransformerConfig", "RoiTransformerModel", None),
    ("connectome_transformer", "ConnectomeTransformerConfig", "ConnectomeTransformerModel", None),
    ("tangent_connectome", "TangentConnectomeConfig", "TangentConnectomeModel", None),
    ("swin4d", "Swin4DConfig", "Swin4DModel", None),
    ("vit4d", "Vit4DConfig", "Vit4DModel", None),
    ("resnet3d", "ResNet3DConfig", "ResNet3DModel", None),
    ("cnn_gru", "CnnGruConfig", "CnnGruModel", None),
    ("perceiver", "PerceiverFmriConfig", "PerceiverFmriModel", None),
    ("mnemodyn", "MnemoDynConfig", "MnemoDynModel", "MnemoDynForPretraining"),
    ("r2tnet", "R2TNetConfig", "R2TNetModel", "R2TNetForContrastivePretraining"),
)


def configuration_module(family: str) -> str:
    return f"r2tnet_hf.models.{family}.configuration_{family}"


def modeling_module(family: str) -> str:
    return f"r2tnet_hf.models.{family}.modeling_{family}"


def family_exports(package: str, configurations: bool):
    """`lazy_exports` of the facades `configuration` (every family's config class) and `modeling` (every family's
    public classes but its config, and the backbone output type), read from the family packages' own tables."""
    from .utils import lazy_exports

    table: dict[str, tuple[str, ...]] = {} if configurations else {"r2tnet_hf.models.common": ("FmriBackboneOutput",)}
    for family, *_ in FAMILIES:
        names = importlib.import_module(f"r2tnet_hf.models.{family}").__all__  # a lazy package: imports nothing
        table[f"r2tnet_hf.models.{family}"] = tuple(
            name for name in names if name[0].isupper() and name.endswith("Config") == configurations
        )
    return lazy_exports(package, table)


def _config_classes() -> list[type]:
    return [getattr(importlib.import_module(configuration_module(f)), c) for f, c, _, _ in FAMILIES]


def register_configs() -> None:
    from transformers import AutoConfig

    for config_class in _config_classes():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)


def register_processor() -> None:
    from transformers import AutoFeatureExtractor

    from .processing import FmriProcessor

    for config_class in _config_classes():
        AutoFeatureExtractor.register(config_class, FmriProcessor, exist_ok=True)


def register_models() -> None:
    from transformers import AutoModel, AutoModelForPreTraining

    for family, config_name, model_name, pretraining_name in FAMILIES:
        config_class = getattr(importlib.import_module(configuration_module(family)), config_name)
        module = importlib.import_module(modeling_module(family))
        AutoModel.register(config_class, getattr(module, model_name), exist_ok=True)
        if pretraining_name:
            AutoModelForPreTraining.register(config_class, getattr(module, pretraining_name), exist_ok=True)


#: registration -> the transformers Auto modules it fills (the first one's import asks for it)
_STEPS = (
    (register_configs, (CONFIGURATION_AUTO,)),
    (register_processor, (FEATURE_EXTRACTION_AUTO, CONFIGURATION_AUTO)),
    (register_models, (MODELING_AUTO, CONFIGURATION_AUTO)),
)
#: the packages whose imports are watched: a registration imports from both, so it waits for both to be whole
_PACKAGES = ("transformers", "r2tnet_hf")
_done: set = set()
_lock = threading.RLock()
_running = False


def _watched(name: str) -> bool:
    return name.partition(".")[0] in _PACKAGES


def _half_imported(module, just_finished: str | None) -> bool:
    """Whether the module's body is still running (`just_finished` has run its body; its import flag is still up)."""
    spec = getattr(module, "__spec__", None)
    return getattr(spec, "_initializing", False) is True and spec.name != just_finished


def _ready(needs: tuple[str, ...], just_finished: str | None) -> bool:
    """The Auto modules are loaded, and no module of transformers or of this package is half-imported: a
    registration imports both (a model family imports `transformers.modeling_layers`, which itself imports
    `AutoModel` at its top, so `modeling_auto` can be whole while `modeling_layers` is not)."""
    if any(name not in sys.modules or _half_imported(sys.modules[name], just_finished) for name in needs):
        return False
    return not any(
        _watched(name) and _half_imported(module, just_finished) for name, module in list(sys.modules.items())
    )


def run_due(just_finished: str | None = None) -> None:
    """Run every registration whose modules are loaded, once each."""
    global _running
    with _lock:
        if _running:  # the registrations import watched modules themselves; the outer call goes on after them
            return
        _running = True
        try:
            progress = True
            while progress:  # a registration can load what another one waits for
                progress = False
                for step, needs in _STEPS:
                    if step not in _done and _ready(needs, just_finished):
                        step()
                        _done.add(step)
                        progress = True
        finally:
            _running = False


class _NotifyingLoader(importlib.abc.Loader):
    """Runs the wrapped loader, then the registrations that were waiting for this module."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        run_due(just_finished=module.__name__)

    def __getattr__(self, name: str):  # get_code, get_source, is_package, ... for tools that ask
        return getattr(self._loader, name)


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds watched modules with the other finders and wraps their loader."""

    def __init__(self) -> None:
        self._finding: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        if not _watched(fullname) or fullname in self._finding:
            return None
        self._finding.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _NotifyingLoader(spec.loader)
        return spec


_finder = _AfterImportFinder()


def install() -> None:
    """Register now what transformers has loaded already, and watch for the rest."""
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    run_due(just_finished="r2tnet_hf")  # called last in the package's `__init__`, whose import is not watched
