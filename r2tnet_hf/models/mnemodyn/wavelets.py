"""One level of an orthogonal discrete wavelet transform with periodisation, in torch, equal to PyWavelets'.

`dwt(x, wavelet)` equals `pywt.dwt(x, wavelet, mode="periodization")` along the last axis, and `idwt(a, d, wavelet)`
equals `pywt.idwt(a, d, wavelet, mode="periodization")`; the tests use PyWavelets as the oracle, for several wavelets
and for even and odd lengths. With decomposition filters `lo`, `hi` of length L and a signal of even length M (an odd
length is first extended by repeating its last sample, as PyWavelets and pytorch_wavelets do):

    a[k] = sum_n lo[n] x[(2k + L/2 - n) mod M],    d[k] = sum_n hi[n] x[(2k + L/2 - n) mod M],    k < M/2

For an orthogonal wavelet this map is orthogonal, so the inverse is its transpose. Both directions are gathers
(O(M·L), differentiable); the filter taps come from PyWavelets (`pywt.Wavelet(name)`), so any orthogonal wavelet
it knows (haar, dbN, symN, coifN) works. MnemoDyn's reference uses db2 through pytorch_wavelets' `DWT1DForward(J=1,
mode="periodization")`, which matches PyWavelets to float32 rounding.
"""

from __future__ import annotations

from functools import cache, lru_cache

import torch


@cache
def wavelet_filters(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The decomposition low-pass and high-pass taps of the orthogonal wavelet `name`, from PyWavelets."""
    import pywt

    try:
        wavelet = pywt.Wavelet(name)
    except ValueError:
        raise ValueError(f"unknown wavelet {name!r}: expected a PyWavelets name such as 'db2' or 'sym4'") from None
    if not wavelet.orthogonal:
        raise ValueError(f"wavelet {name!r} is not orthogonal; the periodised transform here needs one")
    return tuple(wavelet.dec_lo), tuple(wavelet.dec_hi)


@lru_cache(maxsize=64)
def _analysis_index(length: int, taps: int) -> torch.Tensor:
    """(M/2, L) positions read by each coefficient, tap n at column n."""
    k = torch.arange(length // 2).unsqueeze(1)
    n = torch.arange(taps).unsqueeze(0)
    return (2 * k + taps // 2 - n) % length


@lru_cache(maxsize=64)
def _synthesis_index(length: int, taps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each output position m, the L/2 (coefficient, tap) pairs that wrote to it in the analysis."""
    index = _analysis_index(length, taps)
    coefficient = torch.empty(length, taps // 2, dtype=torch.long)
    tap = torch.empty(length, taps // 2, dtype=torch.long)
    filled = torch.zeros(length, dtype=torch.long)
    for k in range(length // 2):
        for n in range(taps):
            m = int(index[k, n])
            coefficient[m, filled[m]] = k
            tap[m, filled[m]] = n
            filled[m] += 1
    return coefficient, tap


def _taps(name: str, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = wavelet_filters(name)
    return (
        torch.tensor(lo, dtype=reference.dtype, device=reference.device),
        torch.tensor(hi, dtype=reference.dtype, device=reference.device),
    )


def dwt(values: torch.Tensor, wavelet: str = "db2") -> tuple[torch.Tensor, torch.Tensor]:
    """One periodised level along the last axis of `values` `(..., N)`: `(approximation, detail)`, each
    `(..., ceil(N / 2))`."""
    if values.shape[-1] < 1:
        raise ValueError("dwt needs at least one sample along the last axis")
    if values.shape[-1] % 2:
        values = torch.cat([values, values[..., -1:]], dim=-1)
    lo, hi = _taps(wavelet, values)
    index = _analysis_index(values.shape[-1], lo.numel()).to(values.device)
    windows = values[..., index]  # (..., M/2, L)
    return windows @ lo, windows @ hi


def idwt(approximation: torch.Tensor, detail: torch.Tensor, wavelet: str = "db2") -> torch.Tensor:
    """Inverse of `dwt` (the transpose of its orthogonal analysis map): `(..., M/2)` twice → `(..., M)`."""
    if approximation.shape != detail.shape:
        raise ValueError(f"approximation {tuple(approximation.shape)} and detail {tuple(detail.shape)} differ")
    lo, hi = _taps(wavelet, approximation)
    length = 2 * approximation.shape[-1]
    coefficient, tap = (t.to(approximation.device) for t in _synthesis_index(length, lo.numel()))
    return (approximation[..., coefficient] * lo[tap] + detail[..., coefficient] * hi[tap]).sum(dim=-1)


def wavedec(values: torch.Tensor, levels: int, wavelet: str = "db2") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`levels` levels, each transforming the previous approximation: `(approximations, details)`, finest first."""
    approximations, details = [], []
    approximation = values
    for _ in range(levels):
        approximation, detail = dwt(approximation, wavelet)
        approximations.append(approximation)
        details.append(detail)
    return approximations, details


__all__ = ["dwt", "idwt", "wavedec", "wavelet_filters"]
