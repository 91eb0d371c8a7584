import pytest
import torch
from torch import nn

from r2tnet_hf.training.ema import WeightEma


def small_model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_update_follows_the_formula_and_integer_buffers_are_copied():
    model = small_model()
    ema = WeightEma(model, decay=0.9)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(5, 3))  # moves the BatchNorm running stats and its integer counter
    ema.update(model)
    for name, p in model.named_parameters():
        torch.testing.assert_close(ema.shadow[name], 0.9 * start[name] + 0.1 * p.detach())
    assert ema.shadow["1.num_batches_tracked"].item() == 1
    assert ema.num_updates == 1


def test_warmup_decay_starts_small():
    ema = WeightEma(small_model(), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)
    ema.num_updates = 10_000
    assert ema.current_decay() == pytest.approx(0.999)


def test_average_parameters_swaps_in_and_restores():
    model = small_model().eval()
    ema = WeightEma(model, decay=0.5)
    original = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    trained = [p.detach().clone() for p in model.parameters()]
    ema.update(model)
    with ema.average_parameters(model):
        for p, o, t in zip(model.parameters(), original, trained):
            torch.testing.assert_close(p, 0.5 * o + 0.5 * t)
    for p, t in zip(model.parameters(), trained):
        torch.testing.assert_close(p, t)


def test_state_dict_round_trip_and_mismatch():
    model = small_model()
    ema = WeightEma(model, decay=0.8)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    other = WeightEma(small_model(), decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.8 and other.num_updates == 1
    for name in ema.shadow:
        torch.testing.assert_close(other.shadow[name], ema.shadow[name])
    target = small_model()
    other.copy_to(target)
    torch.testing.assert_close(target[0].weight, ema.shadow["0.weight"])
    with pytest.raises(KeyError, match="does not match"):
        WeightEma(nn.Linear(3, 4)).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="decay"):
        WeightEma(model, decay=1.0)
