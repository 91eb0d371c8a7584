import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

from r2tnet_hf import (
    ConnectomeTransformerConfig,
    FmriInputError,
    R2TNetConfig,
    R2TNetForContrastivePretraining,
    R2TNetForPhenotypePrediction,
    R2TNetModel,
    RoiTransformerConfig,
)
from tests.model_tester import ModelTesterMixin

NUM_ROIS, NUM_FRAMES, SIGNATURE = 16, 40, 24


def tiny_config(**overrides):
    backbone = RoiTransformerConfig(
        num_rois=NUM_ROIS,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    values = dict(backbone_config=backbone, signature_dim=SIGNATURE, projection_hidden_size=48, num_labels=2)
    values.update(overrides)
    return R2TNetConfig(**values)


class TestR2TNetModels(ModelTesterMixin):
    model_classes = (R2TNetModel, R2TNetForContrastivePretraining, R2TNetForPhenotypePrediction)
    per_scan_model_classes = (R2TNetModel, R2TNetForPhenotypePrediction)
    batch_size = 4

    def get_config(self):
        return tiny_config()

    def get_inputs(self, model_class, batch_size):
        inputs = {
            "fmri_values": torch.randn(batch_size, NUM_ROIS, NUM_FRAMES),
            "attention_mask": torch.ones(batch_size, NUM_FRAMES, dtype=torch.long),
            "repetition_time": torch.full((batch_size,), 0.72),
        }
        if model_class is R2TNetForContrastivePretraining:
            inputs["subject_ids"] = torch.arange(batch_size) // 2
        if model_class is R2TNetForPhenotypePrediction:
            inputs["labels"] = torch.arange(batch_size) % 2
        return inputs

    def output_tensor(self, output):
        return output.signature

    def check_output_shapes(self, model, output, inputs):
        assert output.signature.shape == (self.batch_size, SIGNATURE)
        torch.testing.assert_close(output.signature.norm(dim=-1), torch.ones(self.batch_size))
        if isinstance(model, R2TNetForPhenotypePrediction):
            assert output.logits.shape == (self.batch_size, 2)
        if isinstance(model, R2TNetForContrastivePretraining):
            assert output.loss.ndim == 0

    def expected_attention_shapes(self, model, inputs):
        return [(self.batch_size, 4, NUM_FRAMES // 4, NUM_FRAMES // 4)] * 2  # the RoiTransformer backbone's


def test_default_signature_is_2048_d_and_unit_norm():
    config = R2TNetConfig(
        backbone_config=RoiTransformerConfig(
            num_rois=NUM_ROIS, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
        )
    )
    assert config.signature_dim == 2048
    signature = R2TNetModel(config)(torch.randn(3, NUM_ROIS, 33), repetition_time=2.0).signature
    assert signature.shape == (3, 2048)
    torch.testing.assert_close(signature.norm(dim=-1), torch.ones(3))


def test_composite_config_resolves_the_backbone_through_auto_config(tmp_path):
    config = tiny_config()
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, R2TNetConfig)
    assert isinstance(loaded.backbone_config, RoiTransformerConfig)
    assert loaded.backbone_config.num_rois == NUM_ROIS
    from_dict = R2TNetConfig(backbone_config={"model_type": "roi_transformer", "num_rois": 7})
    assert isinstance(from_dict.backbone_config, RoiTransformerConfig) and from_dict.backbone_config.num_rois == 7
    assert isinstance(R2TNetConfig().backbone_config, ConnectomeTransformerConfig)


def test_head_checkpoints_load_into_the_base_model(tmp_path):
    """A fine-tuned checkpoint loads as R2TNetModel through AutoModel with the same signature."""
    model = R2TNetForPhenotypePrediction(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, R2TNetModel)
    values = torch.randn(2, NUM_ROIS, NUM_FRAMES)
    with torch.no_grad():
        torch.testing.assert_close(
            base(values, repetition_time=0.8).signature, model(values, repetition_time=0.8).signature
        )
    assert isinstance(AutoModelForPreTraining.from_config(tiny_config()), R2TNetForContrastivePretraining)


def test_two_views_equal_a_batch_with_subject_ids():
    model = R2TNetForContrastivePretraining(tiny_config()).eval()
    view_a, view_b = torch.randn(3, NUM_ROIS, NUM_FRAMES), torch.randn(3, NUM_ROIS, NUM_FRAMES)
    with torch.no_grad():
        paired = model(view_a, repetition_time=0.72, paired_fmri_values=view_b)
        batched = model(torch.cat([view_a, view_b]), repetition_time=0.72, subject_ids=torch.tensor([0, 1, 2, 0, 1, 2]))
    torch.testing.assert_close(paired.loss, batched.loss)
    with pytest.raises(ValueError, match="needs subject_ids"):
        model(view_a, repetition_time=0.72)
    with pytest.raises(FmriInputError, match="subject_ids: expected shape"):
        model(view_a, repetition_time=0.72, subject_ids=torch.tensor([0, 1]))


def test_contrastive_loss_falls_on_two_views_of_the_same_subjects():
    """Eight random subjects, each with its own connectivity; a view is the subject's series plus fresh noise."""
    generator = torch.Generator().manual_seed(1)
    subjects = 8
    mixing = torch.randn(subjects, NUM_ROIS, NUM_ROIS, generator=generator)
    series = mixing @ torch.randn(subjects, NUM_ROIS, NUM_FRAMES, generator=generator)
    series = (series - series.mean(-1, keepdim=True)) / series.std(-1, keepdim=True)

    def view():
        return series + 0.5 * torch.randn(series.shape, generator=generator)

    model = R2TNetForContrastivePretraining(tiny_config(temperature=0.2)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = model(view(), repetition_time=0.72, paired_fmri_values=view()).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, (first, last)


def phenotype_model(**overrides):
    return R2TNetForPhenotypePrediction(tiny_config(**overrides)).eval()


def test_regression_loss_is_mse_and_ignores_missing_targets():
    model = phenotype_model(num_labels=1)
    values = torch.randn(4, NUM_ROIS, NUM_FRAMES)
    labels = torch.tensor([0.5, float("nan"), -1.0, 2.0])
    output = model(values, repetition_time=0.72, labels=labels)
    observed = torch.tensor([True, False, True, True])
    expected = torch.nn.functional.mse_loss(output.logits[:, 0][observed], labels[observed])
    torch.testing.assert_close(output.loss, expected)
    assert output.logits.shape == (4, 1)


def test_classification_losses_follow_problem_type():
    values = torch.randn(4, NUM_ROIS, NUM_FRAMES)
    model = phenotype_model(num_labels=3)
    labels = torch.tensor([0, 2, 1, 1])
    output = model(values, repetition_time=0.72, labels=labels)
    torch.testing.assert_close(output.loss, torch.nn.functional.cross_entropy(output.logits, labels))
    multi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    output = model(values, repetition_time=0.72, labels=multi)
    torch.testing.assert_close(output.loss, torch.nn.functional.binary_cross_entropy_with_logits(output.logits, multi))
    model = phenotype_model(num_labels=2, problem_type="regression")
    targets = torch.randn(4, 2)
    output = model(values, repetition_time=0.72, labels=targets)
    torch.testing.assert_close(output.loss, torch.nn.functional.mse_loss(output.logits, targets))


def test_a_batch_whose_labels_are_all_missing_has_zero_loss_not_nan():
    values = torch.randn(3, NUM_ROIS, NUM_FRAMES)
    model = phenotype_model(num_labels=3).train()
    output = model(values, repetition_time=0.72, labels=torch.tensor([-100, -100, -100]))
    assert output.loss.item() == 0.0
    output.loss.backward()  # still a graph: the step runs, and changes nothing
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    partial = model(values, repetition_time=0.72, labels=torch.tensor([2, -100, 0]))
    expected = torch.nn.functional.cross_entropy(partial.logits[[0, 2]], torch.tensor([2, 0]))
    torch.testing.assert_close(partial.loss, expected)
