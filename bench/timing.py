"""Timing shared by the bench scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(functions: list[Callable[[], object]], repeats: int, synchronize=None) -> list[float]:
    """Median seconds per call of each function, timed in alternation so that drifts in clock or load hit all alike.

    Each function runs twice first (warm-up: caches, lazy imports, kernel selection). `synchronize`, if given, is
    called before and after every timed call (e.g. `torch.cuda.synchronize`).
    """
    for function in functions:
        for _ in range(2):
            function()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            if synchronize:
                synchronize()
            start = time.perf_counter()
            function()
            if synchronize:
                synchronize()
            times[index].append(time.perf_counter() - start)
    return [statistics.median(series) for series in times]
