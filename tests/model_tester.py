"""The per-model suite, run for every model class on a tiny config (transformers' ModelTesterMixin, in small)."""

from __future__ import annotations

import inspect
from collections import Counter

import pytest
import torch
from transformers import AutoConfig, AutoModel, PreTrainedModel, initialization

from r2tnet_hf import FmriInputError

# The config fields that switch dropout on, in the models and (for R2T-Net) in their backbone's config.
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "projection_dropout", "classifier_dropout")
# The outputs that hold one row per scan: what a scan gives alone must equal its row in a batch.
PER_SCAN_OUTPUTS = ("pooler_output", "signature", "logits")
RANDOM_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                         "xavier_uniform_", "xavier_normal_", "orthogonal_", "sparse_")  # fmt: skip


def set_dropout(config, probability: float) -> list[str]:
    """Set every dropout field of `config` (and of its `backbone_config`) to `probability`; returns their names."""
    names = []
    for target in (config, getattr(config, "backbone_config", None)):
        for name in DROPOUT_FIELDS:
            if target is not None and hasattr(target, name):
                setattr(target, name, probability)
                names.append(name)
    return names


class ModelTesterMixin:
    """Subclasses set `model_classes` and implement `get_config()` and `get_inputs(batch)`.

    `get_inputs` returns the keyword inputs of `forward` (labels included where the head needs them) and
    `output_tensor(output)` picks the tensor compared across save/load. Models with attention implement
    `expected_attention_shapes`. `per_scan_model_classes` (default: the first class, the base model) are those whose
    outputs are computed per scan from `fmri_values`, `attention_mask` and `repetition_time` alone (no loss over the
    batch, nothing drawn at random), for `test_batching_equivalence`.
    """

    model_classes: tuple = ()
    per_scan_model_classes: tuple = ()
    batch_size = 3

    def get_config(self):
        raise NotImplementedError

    def get_inputs(self, model_class, batch_size):
        raise NotImplementedError

    def output_tensor(self, output):
        return output[0] if output[0] is not None and output[0].ndim > 0 else output[1]

    def check_output_shapes(self, model, output, inputs):
        raise NotImplementedError

    def expected_attention_shapes(self, model, inputs) -> list[tuple[int, ...]]:
        """The shape of each attention layer's probabilities for `inputs`, in order (models with attention)."""
        raise NotImplementedError(f"{type(self).__name__} must give the attention shapes of {type(model).__name__}")

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

    def batching_differences(self, model_class, lengths: list[int]) -> list[float]:
        """Per scan of a batch padded at the end to the longest of `lengths` (its masked frames holding garbage),
        each scan at its own TR: the largest difference between its per-scan outputs (pooled features, signature,
        logits) in the batch and alone."""
        model = self.build(model_class)
        values = self.get_inputs(model_class, len(lengths))["fmri_values"]
        frames = values.shape[-1]
        mask = (torch.arange(frames) < torch.tensor(lengths)[:, None]).long()
        padded = values.masked_fill(~mask.bool().view(len(lengths), *[1] * (values.ndim - 2), frames), 7.0)
        tr = torch.tensor([0.72, 2.0, 0.8, 1.5])[: len(lengths)]
        differences = []
        with torch.no_grad():
            together = model(fmri_values=padded, attention_mask=mask, repetition_time=tr)
            for row, length in enumerate(lengths):
                alone = model(fmri_values=values[row : row + 1, ..., :length], repetition_time=tr[row : row + 1])
                compared = [name for name in PER_SCAN_OUTPUTS if getattr(alone, name, None) is not None]
                assert compared, f"{model_class.__name__} has no per-scan output"
                differences.append(
                    max(
                        float((getattr(together, name)[row] - getattr(alone, name)[0]).abs().max()) for name in compared
                    )
                )
        return differences

    def test_batching_equivalence(self):
        """Each scan encoded alone equals the same scan inside a batch, padded, within 1e-5 (scans of every length
        class: shorter, the longest, a little shorter)."""
        for model_class in self.per_scan_model_classes or self.model_classes[:1]:
            frames = self.get_inputs(model_class, 1)["fmri_values"].shape[-1]
            differences = self.batching_differences(model_class, [frames - 5, frames, frames - 2])
            assert max(differences) <= 1e-5, f"{model_class.__name__}: {differences}"

    def test_attention_outputs(self):
        """`output_attentions=True`: per attention layer, probabilities of the expected shape (non-negative, rows
        summing to 1), and the same output as without them (eager against SDPA); after
        `set_attn_implementation("eager")`, every (sub)model's config says eager and the output is the same again.
        A model without attention refuses the argument with a ValueError saying so."""
        for model_class in self.model_classes:
            if "output_attentions" not in inspect.signature(model_class.forward).parameters:
                continue  # heads take no such argument: test_unknown_arguments_raise passes it
            model = self.build(model_class)
            inputs = self.get_inputs(model_class, self.batch_size)
            if not model._supports_sdpa:
                with pytest.raises(ValueError, match="no attention"):
                    model(**inputs, output_attentions=True)
                continue
            assert model.config._attn_implementation == "sdpa"
            with torch.no_grad():
                plain = model(**inputs)
                output = model(**inputs, output_attentions=True)
            assert plain.attentions is None
            assert [tuple(weights.shape) for weights in output.attentions] == self.expected_attention_shapes(
                model, inputs
            )
            for weights in output.attentions:
                assert bool((weights >= 0).all())
                torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5, rtol=0)
            torch.testing.assert_close(self.output_tensor(output), self.output_tensor(plain), atol=1e-5, rtol=0)
            model.set_attn_implementation("eager")
            submodels = [module for module in model.modules() if isinstance(module, PreTrainedModel)]
            assert all(module.config._attn_implementation == "eager" for module in submodels)
            with torch.no_grad():
                eager = model(**inputs)
            torch.testing.assert_close(self.output_tensor(eager), self.output_tensor(plain), atol=1e-5, rtol=0)

    def test_eval_is_deterministic_and_seeded_training_reproducible(self):
        """Two forward passes in eval mode give the same output exactly. In train mode, with every dropout of the
        config at 0.1, the same seed gives the same output, and (where the config has dropout) another seed another
        output: dropout is on in training and draws from the seeded generator."""
        for model_class in self.model_classes:
            inputs = self.get_inputs(model_class, 2)
            model = self.build(model_class)
            with torch.no_grad():
                first, second = model(**inputs), model(**inputs)
            torch.testing.assert_close(self.output_tensor(second), self.output_tensor(first), atol=0, rtol=0)
            config = self.get_config()
            dropout = set_dropout(config, 0.1)
            model = model_class(config).train()

            def seeded(seed, model=model, inputs=inputs):
                torch.manual_seed(seed)
                return self.output_tensor(model(**inputs)).detach()

            reference = seeded(1)
            torch.testing.assert_close(seeded(1), reference, atol=0, rtol=0)
            if dropout:
                assert (seeded(2) - reference).abs().max() > 0, f"{model_class.__name__}: {dropout} change nothing"

    def test_unknown_arguments_raise(self):
        """A misspelt or unknown keyword argument raises a TypeError naming it, never swallowed; heads that take no
        `output_attentions` refuse it the same way."""
        for model_class in self.model_classes:
            model = self.build(model_class)
            inputs = self.get_inputs(model_class, 2)
            with pytest.raises(TypeError, match="not_an_argument"):
                model(**inputs, not_an_argument=1)
            if "output_attentions" not in inspect.signature(model_class.forward).parameters:
                with pytest.raises(TypeError, match="output_attentions"):
                    model(**inputs, output_attentions=True)

    def test_return_dict_false_gives_the_tuple(self):
        """`return_dict=False` (the argument, or `config.return_dict`) gives the output's non-`None` fields as a
        tuple, in order."""
        for model_class in self.model_classes:
            model = self.build(model_class)
            inputs = self.get_inputs(model_class, 2)
            with torch.no_grad():
                expected = model(**inputs).to_tuple()
                as_tuple = model(**inputs, return_dict=False)
                assert type(as_tuple) is tuple
                torch.testing.assert_close(list(as_tuple), list(expected), atol=0, rtol=0)
                model.config.return_dict = False
                assert type(model(**inputs)) is tuple

    def test_initialisation_draws_each_tensor_once_and_spares_loaded_ones(self, monkeypatch):
        """Re-initialising the model (`initialize_weights`, as `from_pretrained` does for what a checkpoint lacks)
        draws every random tensor at most once (no base-class draw before the model's own), and leaves a tensor
        marked loaded (`_is_hf_initialized`) as it was."""
        draws, calls = Counter(), Counter()  # random draws, and every initialisation, per tensor
        for name, original in list(initialization.TORCH_INIT_FUNCTIONS.items()):

            def counted(tensor, *args, _original=original, _random=name in RANDOM_INIT_FUNCTIONS, **kwargs):
                calls[id(tensor)] += 1
                draws[id(tensor)] += _random
                return _original(tensor, *args, **kwargs)

            monkeypatch.setitem(initialization.TORCH_INIT_FUNCTIONS, name, counted)
        for model_class in self.model_classes:
            model = self.build(model_class)
            loaded = max(model.parameters(), key=lambda p: p.numel())
            with torch.no_grad():
                loaded.add_(0.5)  # a value no initialisation gives
            loaded._is_hf_initialized = True
            before = loaded.detach().clone()
            for module in model.modules():
                module.__dict__.pop("_is_hf_initialized", None)
            draws.clear(), calls.clear()
            model.initialize_weights()
            twice = [name for name, p in model.named_parameters() if draws[id(p)] > 1]
            assert not twice, f"{model_class.__name__}: drawn more than once: {twice}"
            assert calls, f"{model_class.__name__}: nothing initialised"
            assert torch.equal(loaded, before), f"{model_class.__name__}: a loaded tensor was initialised again"
