"""Every model class the package exports is run through the shared suite (`tests/model_tester.py`)."""

import importlib
import inspect
import pkgutil

import r2tnet_hf
import tests.models
from tests.model_tester import ModelTesterMixin


def test_every_exported_model_class_has_a_model_tester_class():
    tested = set()
    for module_info in pkgutil.walk_packages(tests.models.__path__, prefix="tests.models."):
        if module_info.name.rsplit(".", 1)[-1].startswith("test_modeling_"):
            module = importlib.import_module(module_info.name)
            for _, test_class in inspect.getmembers(module, inspect.isclass):
                if issubclass(test_class, ModelTesterMixin) and test_class is not ModelTesterMixin:
                    tested.update(test_class.model_classes)
    exported = {
        getattr(r2tnet_hf, name)
        for name in r2tnet_hf.__all__
        if name.endswith(("Model", "Pretraining", "Prediction")) and not name.endswith("PreTrainedModel")
    }
    assert len(exported) == 13  # ten families; R2T-Net and MnemoDyn with their heads
    assert not exported - tested, f"no ModelTesterMixin class for {sorted(c.__name__ for c in exported - tested)}"
