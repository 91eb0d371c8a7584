"""The per-model suite, run for every model class on a tiny config (transformers' ModelTesterMixin, in small)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel

from r2tnet_hf import FmriInputError


class ModelTesterMixin:
    """Subclasses set `model_classes` and implement `get_config()` and `get_inputs(batch)`.

    `get_inputs` returns the keyword inputs of `forward` (labels included where the head needs them) and
    `output_tensor(output)` picks the tensor compared across save/load.
    """

    model_classes: tuple = ()
    batch_size = 3

    def get_config(self):
        raise NotImplementedError

    def get_inputs(self, model_class, batch_size):
        raise NotImplementedError

    def output_tensor(self, output):
        return output[0] if output[0] is not None and output[0].ndim > 0 else output[1]

    def check_output_shapes(self, model, output, inputs):
        raise NotImplementedError

    def build(self, model_class):
        return model_class(self.get_config()).eval()

    def test_shapes(self):
        for model_class in self.model_classes:
            model = self.build(model_class)
            inputs = self.get_inputs(model_class, self.batch_size)
            with torch.no_grad():
                output = model(**inputs)
            self.check_output_shapes(model, output, inputs)

    def test_save_load_round_trip(self, tmp_path):
        for model_class in self.model_classes:
            model = self.build(model_class)
            inputs = self.get_inputs(model_class, self.batch_size)
            with torch.no_grad():
                before = self.output_tensor(model(**inputs))
            folder = tmp_path / model_class.__name__
            model.save_pretrained(folder)
            assert (folder / "model.safetensors").is_file()
            assert not list(folder.glob("*.bin")), "weights must be safetensors only"
            reloaded = model_class.from_pretrained(folder).eval()
            with torch.no_grad():
                after = self.output_tensor(reloaded(**inputs))
            torch.testing.assert_close(after, before, atol=1e-5, rtol=0)

    def test_auto_model_round_trip(self, tmp_path):
        """The base model loads through AutoConfig/AutoModel from a saved folder, with no trust_remote_code."""
        model = self.build(self.model_classes[0])
        model.save_pretrained(tmp_path)
        config = AutoConfig.from_pretrained(tmp_path)
        assert type(config) is type(model.config)
        reloaded = AutoModel.from_pretrained(tmp_path).eval()
        assert type(reloaded) is self.model_classes[0]
        inputs = self.get_inputs(self.model_classes[0], self.batch_size)
        with torch.no_grad():
            torch.testing.assert_close(
                self.output_tensor(reloaded(**inputs)), self.output_tensor(model(**inputs)), atol=1e-5, rtol=0
            )

    def test_auto_model_from_config(self):
        model = AutoModel.from_config(self.get_config())
        assert type(model) is self.model_classes[0]

    def test_every_parameter_gets_a_gradient_and_no_nan(self):
        for model_class in self.model_classes:
            model = model_class(self.get_config()).train()
            inputs = self.get_inputs(model_class, self.batch_size)
            output = model(**inputs)
            loss = (
                output.loss if getattr(output, "loss", None) is not None else self.output_tensor(output).square().mean()
            )
            assert torch.isfinite(loss)
            loss.backward()
            missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not missing, f"{model_class.__name__}: no gradient for {missing}"
            nan = [name for name, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
            assert not nan, f"{model_class.__name__}: non-finite gradient for {nan}"

    def test_wrong_input_size_raises_documented_error(self):
        for model_class in self.model_classes:
            model = self.build(model_class)
            inputs = self.get_inputs(model_class, self.batch_size)
            values = inputs["fmri_values"]
            inputs["fmri_values"] = values[:, :-1]  # one ROI (or channel) fewer than the config expects
            with pytest.raises(FmriInputError, match="expects"):
                model(**inputs)
            inputs["fmri_values"] = values[0]  # no batch axis
            with pytest.raises(FmriInputError, match="fmri_values: expected"):
                model(**inputs)

    def test_non_finite_input_is_refused_unless_masked_or_turned_off(self):
        """NaN in a real frame: a one-line FmriInputError naming the batch row; NaN in a masked frame: ignored;
        `check_finite_inputs=False`: no check (the caller has checked the data)."""
        for model_class in self.model_classes:
            model = self.build(model_class)
            inputs = self.get_inputs(model_class, 2)
            values = inputs["fmri_values"].clone()
            values[1, ..., 0] = float("nan")
            with pytest.raises(FmriInputError, match=r"fmri_values: expected finite values .* in batch rows \[1\]"):
                model(**{**inputs, "fmri_values": values})
            mask = torch.ones(2, values.shape[-1], dtype=torch.long)
            mask[1, 0] = 0
            with torch.no_grad():
                model(**{**inputs, "fmri_values": values, "attention_mask": mask})  # masked: never read
            config = self.get_config()
            (getattr(config, "backbone_config", None) or config).check_finite_inputs = False  # R2T-Net: its backbone
            unchecked = model_class(config).eval()
            try:  # NaN flows in: a model may return NaN or fail in its own algebra, but no check refuses it
                with torch.no_grad():
                    unchecked(**{**inputs, "fmri_values": values})
            except FmriInputError as error:
                pytest.fail(f"check_finite_inputs=False still checks: {error}")
            except (RuntimeError, ValueError):
                pass

    def test_batching_equivalence(self):
        """A scan encoded alone equals the same scan padded (masked frames at the end) beside a longer one, 1e-5."""
        model = self.build(self.model_classes[0])
        inputs = self.get_inputs(self.model_classes[0], 2)
        values = inputs["fmri_values"]
        frames = values.shape[-1]
        short = frames - 5
        tr = inputs.get("repetition_time")
        tr = torch.as_tensor(tr if tr is not None else 1.0, dtype=torch.float32).expand(2)
        mask = torch.ones(2, frames, dtype=torch.long)
        mask[0, short:] = 0
        padded = values.clone()
        padded[0, ..., short:] = 7.0  # whatever padding holds
        with torch.no_grad():
            alone = model(fmri_values=values[:1, ..., :short], repetition_time=tr[:1])
            together = model(fmri_values=padded, attention_mask=mask, repetition_time=tr)
        pooled = getattr(alone, "pooler_output", None)
        if pooled is None:
            pytest.skip(f"{type(model).__name__} has no pooled output")
        torch.testing.assert_close(together.pooler_output[:1], pooled, atol=1e-5, rtol=0)
