"""`import r2tnet_hf` is lazy, and the Auto classes know every class whichever is imported first.

Each order runs in a fresh interpreter, since what matters is what is imported before what.
"""

import json
import subprocess
import sys
import textwrap

import pytest

import r2tnet_hf
from r2tnet_hf import _auto


def run_fresh(code: str) -> dict:
    """Run `code` in a new interpreter; it prints one JSON object as its last line."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_and_help_load_neither_torch_nor_transformers():
    found = run_fresh(
        """
        import contextlib, io, json, sys
        import r2tnet_hf
        after_import = sorted(m for m in ("torch", "transformers", "numpy") if m in sys.modules)
        from r2tnet_hf.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                main(["--help"])
            except SystemExit as stop:
                code = stop.code
        after_help = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        print(json.dumps({"import": after_import, "help": after_help, "code": code, "usage": out.getvalue()[:13]}))
        """
    )
    assert found == {"import": [], "help": [], "code": 0, "usage": "usage: r2tnet"}


# Each case: what is imported first, then the checks of every Auto class against every family.
CHECK_ALL = """
import json
import r2tnet_hf
from r2tnet_hf import _auto
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForPreTraining
from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_PRETRAINING_MAPPING, MODEL_MAPPING

found = {}
for family, config_name, model_name, pretraining_name in _auto.FAMILIES:
    config_class = AutoConfig.for_model(getattr(r2tnet_hf, config_name).model_type).__class__
    found[family] = [
        config_class is getattr(r2tnet_hf, config_name),
        MODEL_MAPPING[config_class] is getattr(r2tnet_hf, model_name),
        FEATURE_EXTRACTOR_MAPPING[config_class] is r2tnet_hf.FmriProcessor,
        pretraining_name is None or MODEL_FOR_PRETRAINING_MAPPING[config_class] is getattr(r2tnet_hf, pretraining_name),
    ]
tiny = r2tnet_hf.R2TNetConfig(
    backbone_config=r2tnet_hf.RoiTransformerConfig(
        num_rois=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    ),
    signature_dim=8,
)
found["from_config"] = [type(AutoModel.from_config(tiny)).__name__, type(AutoModelForPreTraining.from_config(tiny)).__name__]
print(json.dumps(found))
"""

FIRST_IMPORTS = {
    "r2tnet_hf first": "import r2tnet_hf",
    "transformers' Auto classes first": "from transformers import AutoConfig, AutoModel, AutoFeatureExtractor",
    "transformers' modeling code first": "import transformers.modeling_utils",
    "a model family first (it imports AutoModel while half-imported)": "from r2tnet_hf import R2TNetModel",
    "a configuration first (it imports AutoConfig while half-imported)": "from r2tnet_hf import R2TNetConfig",
    "the processor first": "from r2tnet_hf import FmriProcessor",
    "the shared model code first (transformers.modeling_layers imports AutoModel while half-imported)": (
        "from r2tnet_hf.models.common import FmriBackboneOutput"
    ),
}


@pytest.mark.parametrize("first", sorted(FIRST_IMPORTS))
def test_auto_classes_know_every_family_whatever_is_imported_first(first):
    found = run_fresh(FIRST_IMPORTS[first] + "\n" + CHECK_ALL)
    assert found.pop("from_config") == ["R2TNetModel", "R2TNetForContrastivePretraining"]
    assert found == {family: [True, True, True, True] for family, *_ in _auto.FAMILIES}


def test_every_public_name_resolves_and_is_listed():
    for name in r2tnet_hf.__all__:
        assert getattr(r2tnet_hf, name).__name__ == name
    assert set(r2tnet_hf.__all__) <= set(dir(r2tnet_hf))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchModel'"):
        r2tnet_hf.NoSuchModel  # noqa: B018


def test_family_packages_export_their_helpers_lazily():
    from r2tnet_hf.models import connectome_transformer, tangent_connectome

    assert callable(connectome_transformer.masked_correlation)
    assert callable(tangent_connectome.symmetric_log)
    assert "ConnectomeTransformerModel" in connectome_transformer.__all__
    with pytest.raises(AttributeError):
        tangent_connectome.masked_correlation  # noqa: B018
