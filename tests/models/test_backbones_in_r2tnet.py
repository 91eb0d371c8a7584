"""Every backbone inside R2T-Net, and the time-mask contract every backbone keeps."""

import pytest
import torch
from transformers import AutoModel

from r2tnet_hf import R2TNetConfig, R2TNetModel
from tests.models.tiny_backbones import BACKBONES

SIGNATURE = 24


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_r2tnet_on_each_backbone_gives_a_normalised_signature(name):
    make_config, make_inputs = BACKBONES[name]
    backbone = make_config()
    model = R2TNetModel(R2TNetConfig(backbone_config=backbone, signature_dim=SIGNATURE, projection_hidden_size=48))
    assert type(model.backbone.config) is type(backbone)
    inputs = make_inputs(2)
    output = model(**inputs)
    assert output.signature.shape == (2, SIGNATURE)
    torch.testing.assert_close(output.signature.norm(dim=-1), torch.ones(2))
    assert output.pooler_output.shape == (2, backbone.hidden_size)
    output.signature.sum().backward()  # the signature is differentiable down to the backbone
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_r2tnet_with_each_backbone_round_trips_through_auto_model(name, tmp_path):
    make_config, make_inputs = BACKBONES[name]
    config = R2TNetConfig(backbone_config=make_config(), signature_dim=SIGNATURE, projection_hidden_size=48)
    model = R2TNetModel(config).eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded.backbone) is type(model.backbone)
    saved, loaded = model.config.backbone_config.to_dict(), reloaded.config.backbone_config.to_dict()
    saved.pop("dtype"), loaded.pop("dtype")  # from_pretrained records the dtype it loaded in
    assert loaded == saved
    inputs = make_inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).signature, model(**inputs).signature, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_values_of_masked_frames_do_not_change_the_output(name):
    make_config, make_inputs = BACKBONES[name]
    model = type_of(make_config())(make_config()).eval()
    inputs = make_inputs(2)
    frames = inputs["attention_mask"].shape[1]
    inputs["attention_mask"][0, frames // 2 :] = 0
    inputs["attention_mask"][1, 1] = 0  # a hole in the middle
    with torch.no_grad():
        before = model(**inputs).pooler_output
        changed = inputs["fmri_values"].clone()
        changed[0, ..., frames // 2 :] = 1000.0 * torch.randn_like(changed[0, ..., frames // 2 :])
        changed[1, ..., 1] = -1000.0
        after = model(**{**inputs, "fmri_values": changed}).pooler_output
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["roi_transformer", "connectome_transformer", "tangent_connectome", "perceiver_roi"])
def test_a_short_scan_padded_in_a_batch_gives_what_it_gives_alone(name):
    """Padding length is invisible: a 24-frame scan padded to 40 in a batch equals the scan alone."""
    make_config, make_inputs = BACKBONES[name]
    model = type_of(make_config())(make_config()).eval()
    inputs = make_inputs(2)
    short = inputs["fmri_values"][0, :, :24].clone()
    inputs["attention_mask"][0, 24:] = 0
    with torch.no_grad():
        batched = model(**inputs).pooler_output
        alone = model(short[None], repetition_time=inputs["repetition_time"][:1]).pooler_output
        other = model(inputs["fmri_values"][1:], repetition_time=inputs["repetition_time"][1:]).pooler_output
    torch.testing.assert_close(batched, torch.cat([alone, other]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(set(BACKBONES) - {"tangent_connectome"}))  # no layers to recompute
def test_gradient_checkpointing_gives_the_same_gradients(name):
    make_config, make_inputs = BACKBONES[name]
    model = type_of(make_config())(make_config()).train()
    for module in model.modules():  # batch norm statistics would differ between the two passes
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    inputs = make_inputs(2)
    model(**inputs).pooler_output.square().sum().backward()
    plain = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    model(**inputs).pooler_output.square().sum().backward()
    for parameter_name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[parameter_name], atol=1e-5, rtol=1e-4)


def type_of(config):
    return type(AutoModel.from_config(config))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_a_misspelt_argument_raises_instead_of_being_ignored(name):
    make_config, make_inputs = BACKBONES[name]
    model = type_of(make_config())(make_config()).eval()
    inputs = make_inputs(2)
    inputs["attention_masks"] = inputs.pop("attention_mask")
    with pytest.raises(TypeError, match="attention_masks"):
        model(**inputs)
    r2tnet = R2TNetModel(R2TNetConfig(backbone_config=make_config(), signature_dim=SIGNATURE))
    with pytest.raises(TypeError, match="attention_masks"):
        r2tnet(**inputs)
