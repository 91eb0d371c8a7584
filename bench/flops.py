"""Attention FLOPs by formula, for the benches: `torch.utils.flop_counter.FlopCounterMode` does not count the CPU
SDPA kernel (`_scaled_dot_product_flash_attention_for_cpu`), so attention models are undercounted there."""

from __future__ import annotations

import math

import torch
from torch.overrides import TorchFunctionMode


class AttentionFlops(TorchFunctionMode):
    """Every `F.scaled_dot_product_attention` call while active, by formula, and which of them `counter` (a
    FlopCounterMode active around this mode) missed.

    One call's forward FLOPs are `2·Lq·Lk·(E + Ev)` per batch × head (Q·Kᵀ and P·V, one multiply-add = 2 FLOPs:
    `4·B·H·N²·d` for self-attention). A backward costs twice that (dQ, dK, dV, dP: four products), the convention of
    FlopCounterMode's own SDPA formulas, so forward+backward is 3× the forward. `forward_flops` sums all calls,
    `missed_forward_flops` those during which `counter` counted nothing (the CPU flash kernel; where the kernel is
    the math one, the counter sees its matmuls and they are not added again).
    """

    def __init__(self, counter=None):
        super().__init__()
        self.counter = counter
        self.forward_flops = 0
        self.missed_forward_flops = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not torch.nn.functional.scaled_dot_product_attention:
            return func(*args, **kwargs)
        query, key, value = args[:3]
        *batch, queries, features = query.shape
        flops = 2 * math.prod(batch) * queries * key.shape[-2] * (features + value.shape[-1])
        before = None if self.counter is None else self.counter.get_total_flops()
        output = func(*args, **kwargs)
        self.forward_flops += flops
        if before is None or self.counter.get_total_flops() == before:
            self.missed_forward_flops += flops
        return output
