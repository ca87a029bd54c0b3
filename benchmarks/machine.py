"""What machine a benchmark ran on, for its results file, and how it times."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["best_seconds", "cpu_model"]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def best_seconds(
    function: Callable[[], Any],
    repeats: int = 3,
    warm_up: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The shortest time of ``repeats`` calls of ``function`` on ``clock`` (wall time;
    ``time.process_time`` counts this process's CPU seconds only, which other
    sessions' load leaves alone), after one untimed call if ``warm_up`` (graph
    optimisation, GPU kernels, allocations)."""
    if warm_up:
        function()
    best = float("inf")
    for _ in range(repeats):
        started = clock()
        function()
        best = min(best, clock() - started)
    return best
