"""An exponential moving average of a model's weights, for evaluation (Polyak averaging).

Example:
    >>> ema = WeightEma(model, decay=0.999)
    >>> for batch in loader:
    ...     loss = model(**batch).loss
    ...     loss.backward(); optimizer.step(); optimizer.zero_grad()
    ...     ema.update(model)
    >>> with ema.average_parameters(model):
    ...     evaluate(model)          # runs on the averaged weights; the training weights come back afterwards
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightEma:
    """Shadow copies of every floating-point parameter and buffer of `model`, updated as
    `shadow ← decay · shadow + (1 − decay) · weight`.

    Args:
        model (`nn.Module`): the model to average (pass the unwrapped model under Accelerate/DDP).
        decay (`float`, *optional*, defaults to 0.999): the EMA decay in [0, 1).
        warmup (`bool`, *optional*, defaults to `False`): use `min(decay, (1 + n) / (10 + n))` at update n, so early
            averages are not dominated by the initial weights.

    Integer buffers (e.g. counters) are copied, not averaged. The shadow is kept in float32 on the weights' device.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: tensor.detach().clone().float() if tensor.is_floating_point() else tensor.detach().clone()
            for name, tensor in self._tensors(model)
        }

    @staticmethod
    def _tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
        yield from model.named_parameters()
        yield from model.named_buffers()

    def current_decay(self) -> float:
        """The decay the next `update` uses."""
        if self.warmup:
            return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow towards `model`'s current weights (call after every optimizer step)."""
        decay = self.current_decay()
        for name, tensor in self._tensors(model):
            shadow = self._shadow_for(name)
            if shadow.is_floating_point():
                shadow.lerp_(tensor.detach().float(), 1.0 - decay)
            else:
                shadow.copy_(tensor)
        self.num_updates += 1

    def _shadow_for(self, name: str) -> torch.Tensor:
        if name not in self.shadow:
            raise KeyError(f"WeightEma has no shadow for {name!r}: was it built from another model?")
        return self.shadow[name]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into `model` (in its dtypes)."""
        for name, tensor in self._tensors(model):
            tensor.copy_(self._shadow_for(name).to(tensor.dtype))

    @contextmanager
    def average_parameters(self, model: nn.Module):
        """Within the block `model` holds the averaged weights; its own weights are restored on exit."""
        backup = {name: tensor.detach().clone() for name, tensor in self._tensors(model)}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, tensor in self._tensors(model):
                    tensor.copy_(backup[name])

    def state_dict(self) -> dict:
        """For checkpoints: decay, warmup, the update count and the shadow tensors."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {name: tensor.clone() for name, tensor in self.shadow.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"WeightEma state does not match the model: differing names {sorted(missing)[:5]}")
        self.decay = float(state["decay"])
        self.warmup = bool(state.get("warmup", False))
        self.num_updates = int(state["num_updates"])
        for name, tensor in state["shadow"].items():
            self.shadow[name].copy_(tensor)


__all__ = ["WeightEma"]
