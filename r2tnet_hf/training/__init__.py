"""Training: losses now; the Accelerate loop, schedules and checkpointing arrive with the training issue."""

from .losses import gather_with_grad, nt_xent_loss

__all__ = ["gather_with_grad", "nt_xent_loss"]
