"""An exact, differentiable db2 discrete wavelet transform with periodisation, in torch.

One level maps `x` of even length N to an approximation `a` and a detail `d` of length N/2:

    a[k] = sum_n h[n] x[(2k + n) mod N],    d[k] = sum_n g[n] x[(2k + n) mod N],    g[n] = (-1)^n h[3 - n]

with the Daubechies-2 low-pass filter `h`. The analysis matrix is orthogonal, so the inverse is its transpose (a
strided transposed convolution whose overhang is wrapped back to the start) and the energy is preserved. Several
levels transform the approximation again. The tests check this module against the explicit analysis matrix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_SQRT3 = math.sqrt(3.0)
DB2_LOWPASS = tuple(v / (4 * math.sqrt(2.0)) for v in (1 + _SQRT3, 3 + _SQRT3, 3 - _SQRT3, 1 - _SQRT3))
DB2_HIGHPASS = tuple((-1) ** n * DB2_LOWPASS[3 - n] for n in range(4))


def _filters(reference: torch.Tensor) -> torch.Tensor:
    """The (2, 1, 4) filter bank [low-pass; high-pass] in the dtype and device of `reference`."""
    return torch.tensor([DB2_LOWPASS, DB2_HIGHPASS], dtype=reference.dtype, device=reference.device).unsqueeze(1)


def dwt_level(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One db2 level along the last axis of `values` `(..., N)`, N even: returns `(approximation, detail)`."""
    length = values.shape[-1]
    if length < 2 or length % 2:
        raise ValueError(f"dwt_level needs an even length >= 2 along the last axis, got {length}")
    leading = values.shape[:-1]
    flat = values.reshape(-1, 1, length)
    wrapped = torch.cat([flat, flat[..., :2]], dim=-1)  # periodic extension by filter length - 2
    coefficients = F.conv1d(wrapped, _filters(values), stride=2)  # (rows, 2, N/2)
    return coefficients[:, 0].reshape(*leading, length // 2), coefficients[:, 1].reshape(*leading, length // 2)


def idwt_level(approximation: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """Inverse of `dwt_level`: `(..., N/2)` twice → `(..., N)`."""
    half = approximation.shape[-1]
    leading = approximation.shape[:-1]
    stacked = torch.stack([approximation, detail], dim=-2).reshape(-1, 2, half)
    spread = F.conv_transpose1d(stacked, _filters(approximation), stride=2)  # (rows, 1, N + 2)
    length = 2 * half
    head, overhang = spread[..., :length], spread[..., length:]
    head = torch.cat([head[..., :2] + overhang, head[..., 2:]], dim=-1)
    return head.reshape(*leading, length)


def wavedec(values: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`levels` db2 levels along the last axis (length a multiple of `2**levels`).

    Returns `(approximation, details)` with `details[0]` the finest level (length N/2) and `approximation` the
    coarsest (length N / 2**levels).
    """
    length = values.shape[-1]
    if length % (2**levels) or length < 2**levels:
        raise ValueError(f"wavedec needs a length that is a multiple of 2**{levels} = {2**levels}, got {length}")
    details = []
    approximation = values
    for _ in range(levels):
        approximation, detail = dwt_level(approximation)
        details.append(detail)
    return approximation, details


def waverec(approximation: torch.Tensor, details: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of `wavedec`."""
    values = approximation
    for detail in reversed(details):
        values = idwt_level(values, detail)
    return values


__all__ = ["DB2_HIGHPASS", "DB2_LOWPASS", "dwt_level", "idwt_level", "wavedec", "waverec"]
