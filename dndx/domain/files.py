"""Domain profiles of waveform files: a sample of their waveforms, read with
:mod:`dndx.io.readers` and profiled with :func:`dndx.domain.profile.profile_waveforms`.

A profile needs a few thousand waveforms, not a whole file: each file gives its
share of ``max_waveforms`` in a few contiguous runs spread over the file, so a
file ordered by run, momentum or time is sampled across its whole length.
Unusable waveforms (empty, NaN or inf, too short) are left out, as inference
skips them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from dndx.chain.preprocessing import Polarity, validate_rows
from dndx.config import DomainConfig
from dndx.domain.profile import DomainProfile, profile_waveforms
from dndx.errors import InputError
from dndx.io.readers import WaveformSource, count_waveforms, read_chunk
from dndx.ragged import Ragged

__all__ = ["profile_files", "read_sample", "sample_ranges"]

_RUNS = 8


def sample_ranges(n_entries: int, n_wanted: int, n_runs: int = _RUNS) -> list[tuple[int, int]]:
    """At most ``n_runs`` entry ranges ``[start, stop)`` spread over ``n_entries``
    entries, ``n_wanted`` entries in all (every entry where there are no more).

    >>> sample_ranges(100, 20, 4)
    [(0, 5), (25, 30), (50, 55), (75, 80)]
    >>> sample_ranges(10, 50)
    [(0, 10)]
    """
    if n_wanted >= n_entries:
        return [(0, n_entries)] if n_entries else []
    runs = max(1, min(n_runs, n_wanted))
    starts = np.linspace(0, n_entries, runs, endpoint=False).astype(np.int64)
    sizes = np.full(runs, n_wanted // runs)
    sizes[: n_wanted % runs] += 1
    return [(int(s), int(s + n)) for s, n in zip(starts, sizes, strict=True)]


def read_sample(
    source: WaveformSource, n_wanted: int, sampling_rate_ghz: float, min_length: int = 2
) -> tuple[Ragged, NDArray[np.float64]]:
    """About ``n_wanted`` usable waveforms of ``source``, spread over the file, and
    ``(n_read,)`` their sampling rates: those the file stores in its rate column, else
    ``sampling_rate_ghz``.

    Raises:
        InputError: as :func:`dndx.io.readers.read_chunk`.
    """
    parts, rates = [], []
    for start, stop in sample_ranges(count_waveforms(source), n_wanted):
        chunk = read_chunk(source, start, stop)
        ok, _ = validate_rows(chunk.samples, min_length)
        rows = np.flatnonzero(ok)
        parts.append(chunk.samples.take(rows))
        stored = chunk.sampling_rate_ghz
        rates.append(np.full(len(rows), sampling_rate_ghz) if stored is None else stored[rows])
    if not parts:
        return Ragged.from_lengths(np.zeros(0), []), np.zeros(0)
    return Ragged.concatenate(parts), np.concatenate(rates).astype(np.float64)


def profile_files(
    sources: Sequence[WaveformSource],
    sampling_rate_ghz: float,
    cfg: DomainConfig,
    candidate_threshold_sigma: float,
    polarity: Polarity = "auto",
) -> DomainProfile:
    """One profile of all ``sources`` together, each giving a share of
    ``cfg.max_waveforms`` in proportion to its size, read at its stored rates
    where it has a rate column, else at ``sampling_rate_ghz``.

    Raises:
        InputError: a file cannot be read, or the files hold no usable waveform.
    """
    counts = [count_waveforms(source) for source in sources]
    total = sum(counts)
    parts = [
        read_sample(source, max(1, round(cfg.max_waveforms * count / total)), sampling_rate_ghz)
        for source, count in zip(sources, counts, strict=True)
        if count
    ]
    if not sum(len(samples) for samples, _ in parts):
        names = ", ".join(str(source.path) for source in sources)
        raise InputError(f"{names}: no usable waveforms to profile (empty, NaN or too short)")
    return profile_waveforms(
        Ragged.concatenate([samples for samples, _ in parts]),
        np.concatenate([rates for _, rates in parts]),
        cfg,
        candidate_threshold_sigma,
        polarity,
    )
