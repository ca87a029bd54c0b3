"""What a piece of work cost: wall time, CPU time and utilisation, peak memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

__all__ = ["measure_resources"]


@contextmanager
def measure_resources(interval_s: float = 0.2) -> Iterator[dict[str, float]]:
    """Measure the enclosed block; the yielded dict is filled in when it ends.

    Keys: ``wall_time_s``, ``cpu_time_s`` (user + system, all threads),
    ``cpu_utilisation`` (CPU time over wall time, 1.0 = one core busy) and
    ``peak_memory_mb`` (the process's largest resident set, sampled).
    """
    process = psutil.Process()
    usage: dict[str, float] = {}
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    cpu_start = sum(process.cpu_times()[:2])
    wall_start = time.perf_counter()
    sampler.start()
    try:
        yield usage
    finally:
        stop.set()
        sampler.join()
        wall = time.perf_counter() - wall_start
        cpu = sum(process.cpu_times()[:2]) - cpu_start
        peak[0] = max(peak[0], process.memory_info().rss)
        usage.update(
            wall_time_s=wall,
            cpu_time_s=cpu,
            cpu_utilisation=cpu / wall if wall > 0 else 0.0,
            peak_memory_mb=peak[0] / 2**20,
        )
