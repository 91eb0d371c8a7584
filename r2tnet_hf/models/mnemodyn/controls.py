"""The control path of a MnemoDyn layer: dX/dt at the frames, and the field contraction f(x) · dX/dt.

**dX/dt.** The reference (`MnemoDyn_Draft`, `coe/light/model/orion.py`) evaluates torchcde splines at the frame
times `t_i = i · duration / num_frames` (`duration` 1 by default):

* its first layer builds Hermite cubic coefficients with backward differences on the *index* grid (`torchcde.
  hermite_cubic_coefficients_with_backward_differences(x)` without `t`) and evaluates `CubicSpline(coeffs,
  time).derivative(time)` on the *time* grid. The units disagree: at frame i (i ≥ 1) it reads interval i − 1 at a
  fractional position `t_i - t_{i-1} = duration / num_frames` where the coefficients expect 1, which gives
  `p + (4 - 3 f) f (q - p)` with `p = x_{i-1} - x_{i-2}`, `q = x_i - x_{i-1}`, `f = duration / num_frames`: almost the
  backward difference of the *previous* frame, per frame rather than per unit of time;
* its later layers use `LinearInterpolation(x, time).derivative(time)`: the backward difference per unit of time
  (`num_frames / duration` times larger than the first layer's).

`time_axis="unit_interval"` reproduces both exactly (`reference_path_derivative`, for imported weights).
`time_axis="seconds"` does it right: frame i sits at `i · TR` seconds and dX/dt at a frame is the derivative of the
interpolating spline there, which for a Hermite spline with backward-difference tangents, and for the
left-continuous linear interpolant, is the same number: `(x_i - x_{i-1}) / TR` (`x_1 - x_0` at the first frame).

**Contraction.** The field is `f(x_t) = act(W code_t + b)` viewed as a `(V, k)` matrix per frame, and the layer
needs `v_t = f(x_t)^T dX_t/dt`. The reference builds the whole `(batch, time, V, k)` field (2.1 GB in float32 at
V=450, k=300, 490 frames, batch 8) and keeps it for the backward pass. `field_contraction` computes the same numbers
`chunk_size` frames at a time and, when a gradient is needed, recomputes each chunk in the backward pass
(activation checkpointing), so at most `(batch, chunk_size, V, k)` is alive.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint


def backward_differences(values: torch.Tensor, step: torch.Tensor | float) -> torch.Tensor:
    """`(x_i - x_{i-1}) / step` along axis 1 of `values` `(batch, time, channels)`, `(x_1 - x_0) / step` at i = 0.

    `step` is a float or a `(batch,)` tensor (seconds per frame). A one-frame series has derivative 0.
    """
    if values.shape[1] < 2:
        return torch.zeros_like(values)
    differences = values[:, 1:] - values[:, :-1]
    differences = torch.cat([differences[:, :1], differences], dim=1)
    if isinstance(step, torch.Tensor):
        step = step.to(values.dtype).view(-1, 1, 1)
    return differences / step


def reference_time_grid(num_frames: int, duration: float, device=None) -> torch.Tensor:
    """The reference's frame times: `np.arange(0, duration, duration / num_frames)` in float64, then float32."""
    grid = torch.from_numpy(np.arange(0, duration, duration / num_frames)).float()
    if grid.numel() != num_frames:  # np.arange can overshoot by one sample on rounding; the reference would break
        raise ValueError(f"duration {duration} does not give {num_frames} frame times")
    return grid.to(device)


def reference_path_derivative(values: torch.Tensor, kind: str, duration: float) -> torch.Tensor:
    """dX/dt exactly as the reference's torchcde calls compute it, at its frame times (see the module docstring).

    `values` `(batch, time, channels)`; `kind` `"hermite"` (the reference's first layer) or `"linear"` (the others).
    """
    frames = values.shape[1]
    if frames < 2:
        return torch.zeros_like(values)
    time = reference_time_grid(frames, duration, values.device).to(values.dtype)
    index = torch.bucketize(time, time).sub(1).clamp(0, frames - 2)  # torchcde's _interpret_t
    fraction = (time - time[index]).view(1, -1, 1)
    if kind == "linear":
        slopes = (values[:, 1:] - values[:, :-1]) / (time[1:] - time[:-1]).view(1, -1, 1)
        return slopes[:, index]
    if kind != "hermite":
        raise ValueError(f"kind must be 'hermite' or 'linear', got {kind!r}")
    # Hermite coefficients with backward differences on the index grid (t_diff = 1), as torchcde forms them.
    one = torch.ones((), dtype=values.dtype, device=values.device)
    derivs = (values[:, 1:] - values[:, :-1]) / one
    derivs_prev = torch.cat([derivs[:, :1], derivs[:, :-1]], dim=1)
    x_diff = values[:, 1:] - values[:, :-1]
    b = derivs_prev
    two_c = 2 * (3 * (x_diff / one - b) - derivs + derivs_prev) / one
    three_d = (1 / one**2) * (derivs - b) - two_c / one
    inner = two_c[:, index] + three_d[:, index] * fraction
    return b[:, index] + inner * fraction


def _contract(code, control, weight, bias, activation, rois, channels):
    field = activation(torch.nn.functional.linear(code, weight, bias))
    field = field.view(*code.shape[:-1], rois, channels)  # (batch, chunk, V, k), V-major as the reference views it
    return torch.einsum("btvk,btv->btk", field, control)


def field_contraction(
    code: torch.Tensor,
    control: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    activation,
    chunk_size: int | None = 64,
) -> torch.Tensor:
    r"""`v_t = act(W code_t + b).view(V, k)^T · control_t` for every frame, `chunk_size` frames at a time.

    Args:
        code (`torch.FloatTensor` of shape `(batch_size, num_timepoints, rank)`): the field MLP's bottleneck code.
        control (`torch.FloatTensor` of shape `(batch_size, num_timepoints, V)`): dX/dt.
        weight (`torch.FloatTensor` of shape `(V * k, rank)`), bias (`(V * k,)`, *optional*): the field's output layer.
        activation: the elementwise activation applied to the field.
        chunk_size (`int`, *optional*, defaults to 64): frames per chunk; `None` builds the whole field at once (the
            reference's way, for the memory bench).

    Returns:
        `torch.FloatTensor` of shape `(batch_size, num_timepoints, k)`.
    """
    rois = control.shape[-1]
    channels = weight.shape[0] // rois
    frames = code.shape[1]
    if chunk_size is None or chunk_size >= frames:
        return _contract(code, control, weight, bias, activation, rois, channels)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (code, control, weight, bias)
    )
    outputs = []
    for start in range(0, frames, chunk_size):
        chunk = (code[:, start : start + chunk_size], control[:, start : start + chunk_size])
        if needs_grad:
            outputs.append(checkpoint(_contract, *chunk, weight, bias, activation, rois, channels, use_reentrant=False))
        else:
            outputs.append(_contract(*chunk, weight, bias, activation, rois, channels))
    return torch.cat(outputs, dim=1)


__all__ = ["backward_differences", "field_contraction", "reference_path_derivative", "reference_time_grid"]
