"""Training: losses and the weight EMA now; the Accelerate loop, schedules and checkpointing arrive with the training
issue."""

from .ema import WeightEma
from .losses import gather_with_grad, nt_xent_loss

__all__ = ["WeightEma", "gather_with_grad", "nt_xent_loss"]
