"""The control path of MnemoDyn's CDE updates: spline derivatives in seconds and the low-rank field contraction.

* `spline_derivative`: dX/dt of the interpolating spline (Hermite cubic or linear) through the frames, with time in
  **seconds** (frame × TR). The draft placed every scan on t ∈ [0, 1], which made dX/dt scale with the scan's
  length and ignore its TR.
* `low_rank_field_contraction`: `F(h) · dX/dt` for a vector field whose output layer maps a rank-r code to the
  `hidden × k` matrix F, without building the `(batch, time, hidden, k)` tensor.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def hermite_tangents(
    values: torch.Tensor, repetition_time: torch.Tensor, frame_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Catmull-Rom tangents (dX/dt at the frames, per second) of `values` `(batch, channels, time)`.

    Central differences where both neighbours are real frames, one-sided differences at the ends of the real frames,
    and 0 at padded frames (and at an isolated real frame).
    """
    step = repetition_time.to(values.dtype).view(-1, 1, 1)
    if frame_mask is None:
        frame_mask = torch.ones(values.shape[0], values.shape[-1], dtype=torch.bool, device=values.device)
    valid = frame_mask.unsqueeze(1)
    has_next = torch.zeros_like(valid)
    has_prev = torch.zeros_like(valid)
    has_next[..., :-1] = valid[..., :-1] & valid[..., 1:]
    has_prev[..., 1:] = valid[..., 1:] & valid[..., :-1]
    forward = torch.zeros_like(values)
    forward[..., :-1] = (values[..., 1:] - values[..., :-1]) / step
    backward = torch.zeros_like(values)
    backward[..., 1:] = forward[..., :-1]
    both = has_next & has_prev
    tangent = torch.where(both, 0.5 * (forward + backward), torch.where(has_next, forward, backward))
    return torch.where(has_next | has_prev, tangent, torch.zeros_like(tangent))


def spline_derivative(
    values: torch.Tensor,
    repetition_time: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    kind: str = "cubic_hermite",
    offset: float = 0.0,
) -> torch.Tensor:
    r"""dX/dt, in units per second, of the interpolating spline through `values`.

    Frame i sits at `i * repetition_time` seconds. The derivative for frame i is taken at `t_i + offset * TR` on the
    interval `[t_i, t_{i+1}]` (the last real frame uses the interval before it, at its right end).

    * `"linear"`: the slope `(x_{i+1} - x_i) / TR` of the interval.
    * `"cubic_hermite"`: the Hermite cubic with Catmull-Rom tangents `m` (`hermite_tangents`); on the interval, with
      `s = offset` and `h = TR`: `p'(s) = ((6s^2 - 6s)(x_i - x_{i+1}) + (3s^2 - 4s + 1) h m_i + (3s^2 - 2s) h m_{i+1}) / h`.
      At `offset=0` this is `m_i`.

    Args:
        values (`torch.FloatTensor` of shape `(batch_size, channels, num_timepoints)`): the path's samples.
        repetition_time (`torch.FloatTensor` of shape `(batch_size,)`): seconds between frames.
        frame_mask (`torch.BoolTensor` of shape `(batch_size, num_timepoints)`, *optional*): real frames; the spline
            ends at the last real frame and the derivative is 0 at padded frames.
        kind (`str`, *optional*, defaults to `"cubic_hermite"`): `"cubic_hermite"` or `"linear"`.
        offset (`float`, *optional*, defaults to 0.0): where in each interval, as a fraction of it, in [0, 1].

    Returns:
        `torch.FloatTensor` of shape `(batch_size, channels, num_timepoints)`.
    """
    if kind not in ("cubic_hermite", "linear"):
        raise ValueError(f"kind must be 'cubic_hermite' or 'linear', got {kind!r}")
    if frame_mask is None:
        frame_mask = torch.ones(values.shape[0], values.shape[-1], dtype=torch.bool, device=values.device)
    step = repetition_time.to(values.dtype).view(-1, 1, 1)
    valid = frame_mask.unsqueeze(1)
    has_next = torch.zeros_like(valid)
    has_next[..., :-1] = valid[..., :-1] & valid[..., 1:]
    # Frame i uses interval (i, i+1) at s = offset, or, when it is the last real frame, interval (i-1, i) at s = 1.
    right = torch.zeros_like(values)
    right[..., :-1] = values[..., 1:]
    left = torch.zeros_like(values)
    left[..., 1:] = values[..., :-1]
    start = torch.where(has_next, values, left)
    end = torch.where(has_next, right, values)
    s = torch.where(has_next, torch.full_like(values, offset), torch.ones_like(values))
    if kind == "linear":
        derivative = (end - start) / step
    else:
        tangents = hermite_tangents(values, repetition_time, frame_mask)
        tangent_right = torch.zeros_like(tangents)
        tangent_right[..., :-1] = tangents[..., 1:]
        tangent_left = torch.zeros_like(tangents)
        tangent_left[..., 1:] = tangents[..., :-1]
        m_start = torch.where(has_next, tangents, tangent_left)
        m_end = torch.where(has_next, tangent_right, tangents)
        derivative = (
            (6 * s**2 - 6 * s) * (start - end) / step + (3 * s**2 - 4 * s + 1) * m_start + (3 * s**2 - 2 * s) * m_end
        )
    has_prev = torch.zeros_like(valid)
    has_prev[..., 1:] = valid[..., 1:] & valid[..., :-1]
    return torch.where(has_next | has_prev, derivative, torch.zeros_like(derivative))


def naive_field_contraction(
    code: torch.Tensor, control: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The reference: build `F = (weight @ code + bias).view(hidden, k)` for every frame, then `F @ control`.

    `code` `(batch, time, rank)`, `control` `(batch, time, k)`, `weight` `(hidden * k, rank)`, `bias` `(hidden * k,)`.
    Materialises `(batch, time, hidden, k)`: for tests and the memory bench only.
    """
    batch, frames, _ = code.shape
    channels = control.shape[-1]
    field = torch.nn.functional.linear(code, weight, bias).view(batch, frames, -1, channels)
    return (field * control.unsqueeze(2)).sum(dim=-1)


def _contract_chunk(code, control, weight_by_pair, bias_matrix):
    # (batch, chunk, rank ⊗ k) outer products; one matmul against weight reshaped to (hidden, rank·k).
    pairs = (code.unsqueeze(-1) * control.unsqueeze(-2)).flatten(-2)
    out = pairs @ weight_by_pair.T
    if bias_matrix is not None:
        out = out + control @ bias_matrix.T
    return out


def low_rank_field_contraction(
    code: torch.Tensor,
    control: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    chunk_size: int = 64,
) -> torch.Tensor:
    r"""`F(h) · dX/dt` without the `(batch, time, hidden, k)` field.

    With `F[i, j] = sum_m W[(i, j), m] c_m + b[(i, j)]`, the contraction with `u = dX/dt` is
    `sum_{m, j} W[i, (j, m)] c_m u_j + sum_j b[i, j] u_j`: the rank × k outer product `c ⊗ u` meets the weight
    reshaped to `(hidden, rank·k)` in one matmul. Frames are processed `chunk_size` at a time under activation
    checkpointing, so training holds `(batch, chunk_size, rank·k)` at most, against `(batch, time, hidden, k)` for the
    naive form (`naive_field_contraction`): the same numbers, in the same FLOPs.

    Args:
        code (`torch.FloatTensor` of shape `(batch_size, num_timepoints, rank)`): the field MLP's bottleneck code.
        control (`torch.FloatTensor` of shape `(batch_size, num_timepoints, k)`): dX/dt.
        weight (`torch.FloatTensor` of shape `(hidden * k, rank)`): the field's output layer (rows ordered hidden-major).
        bias (`torch.FloatTensor` of shape `(hidden * k,)`, *optional*): its bias.
        chunk_size (`int`, *optional*, defaults to 64): frames per chunk.

    Returns:
        `torch.FloatTensor` of shape `(batch_size, num_timepoints, hidden)`.
    """
    rank = code.shape[-1]
    channels = control.shape[-1]
    hidden = weight.shape[0] // channels
    # weight[(i, j), m] → weight_by_pair[i, (m, j)], matching the flattened outer product code[m] * control[j].
    weight_by_pair = weight.view(hidden, channels, rank).transpose(1, 2).reshape(hidden, rank * channels)
    bias_matrix = None if bias is None else bias.view(hidden, channels)
    frames = code.shape[1]
    use_checkpoint = torch.is_grad_enabled() and (code.requires_grad or control.requires_grad or weight.requires_grad)
    outputs = []
    for start in range(0, frames, chunk_size):
        chunk = (code[:, start : start + chunk_size], control[:, start : start + chunk_size])
        if use_checkpoint and frames > chunk_size:
            outputs.append(checkpoint(_contract_chunk, *chunk, weight_by_pair, bias_matrix, use_reentrant=False))
        else:
            outputs.append(_contract_chunk(*chunk, weight_by_pair, bias_matrix))
    return torch.cat(outputs, dim=1)


__all__ = ["hermite_tangents", "low_rank_field_contraction", "naive_field_contraction", "spline_derivative"]
