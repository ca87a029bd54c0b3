"""Fast numpy simulation of drift-chamber waveforms with full truth.

A track crosses a cell; primary clusters are placed uniformly on the chord,
each with a helium cluster size; every electron drifts to the wire with a
diffusion spread and is amplified with Polya gain; the front end turns each
into a bi-exponential pulse with a small ion tail, optionally integrated by a
shaping stage (an RC integrator); noise, white or band-limited (a first-order
low-pass: an AR(1) process), a slow baseline wander, the pedestal, the polarity
and the ADC's quantisation follow.

The pulse train is built exactly at the sampling instants: a pulse is a sum of
causal exponentials, so each electron deposits one weight per exponential at
the first sample after its arrival and the deposits are convolved with the
geometric series of that exponential, in the frequency domain.

Random numbers come in *blocks* of ``block_size`` waveforms, each with its own
stream derived from ``(seed, split, block index)``, so a split generated whole,
or chunk by chunk on any number of workers, is the same to the byte. The
shaping and noise-correlation times come from a child of the block's stream
(``Generator.spawn``), and the correlated noise filters the same white numbers,
so the main stream is what it was before those two were added: with both at 0
(no stage, white noise) the data are those of earlier releases to the byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.config import PARTICLE_MASSES_GEV, Range, SimulationConfig
from dndx.physics import (
    cluster_density_per_cm,
    diffusion_sigma_ns,
    draw_cluster_sizes,
    drift_time_ns,
    pulse_exponentials,
)
from dndx.ragged import Ragged
from dndx.waveforms import SPLITS, WaveformSet

__all__ = ["block_rng", "simulate_block", "simulate_range"]


_WANDER_MODES = 4  # Fourier modes of the baseline wander: up to 2 MHz over a 2 us window


def block_rng(seed: int, split: str, block_index: int) -> np.random.Generator:
    """The independent random stream of one block of one split."""
    sequence = np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), block_index))
    return np.random.Generator(np.random.PCG64(sequence))


def simulate_range(cfg: SimulationConfig, split: str, start: int, stop: int) -> WaveformSet:
    """Waveforms ``start:stop`` of ``split``; both ends must fall on block boundaries
    (``stop`` may also be the split's size).

    >>> import dataclasses
    >>> from dndx.config import load_params
    >>> cfg = dataclasses.replace(load_params().simulate, n_train=6, block_size=3, chunk_size=3)
    >>> whole = simulate_range(cfg, "train", 0, 6)
    >>> parts = [simulate_range(cfg, "train", 0, 3), simulate_range(cfg, "train", 3, 6)]
    >>> bool(np.array_equal(whole.adc.values, WaveformSet.concatenate(parts).adc.values))
    True
    """
    n_total = cfg.n_waveforms(split)
    if not 0 <= start < stop <= n_total:
        raise ValueError(f"range {start}:{stop} is outside the {n_total} waveforms of {split}")
    if start % cfg.block_size or (stop % cfg.block_size and stop != n_total):
        raise ValueError(f"range {start}:{stop} does not fall on blocks of {cfg.block_size}")
    blocks = []
    for first in range(start, stop, cfg.block_size):
        n = min(cfg.block_size, stop - first)
        block = simulate_block(cfg, block_rng(cfg.seed, split, first // cfg.block_size), n)
        block.info.insert(0, "waveform_id", np.arange(first, first + n, dtype=np.int64))
        blocks.append(block)
    return WaveformSet.concatenate(blocks)


def _uniform(rng: np.random.Generator, r: Range, n: int) -> NDArray[np.float64]:
    return rng.uniform(r.low, r.high, n)


def simulate_block(cfg: SimulationConfig, rng: np.random.Generator, n: int) -> WaveformSet:
    """Simulate ``n`` waveforms drawing every random number from ``rng``.

    The steps draw from ``rng`` in this order, which is part of the data's definition.
    """
    track = _draw_tracks(cfg, rng, n)
    settings = _draw_settings(cfg, rng, n)
    electrons = _draw_electrons(cfg, rng, track, settings)
    rows = _digitise(cfg, rng, settings, electrons)
    info = pd.DataFrame(
        {
            **{k: v for k, v in track.items() if k != "half_chord_cm"},
            "n_clusters": track["n_clusters"].astype(np.int64),
            "n_electrons": np.diff(electrons.offsets),
            # The pedestal is in info as the baseline it gives.
            **{k: v for k, v in settings.items() if k != "pedestal_adc"},
            "noise_sigma_adc": settings["noise_fraction"]
            * settings["single_electron_amplitude_adc"],
            "baseline_adc": _baseline_adc(cfg, settings),
            "polarity": settings["polarity"].astype(np.int8),
        }
    )[list(_INFO_COLUMNS)]
    adc_rows = Ragged.from_lengths(
        np.concatenate(rows) if n else np.empty(0, np.uint16), [len(r) for r in rows]
    )
    return WaveformSet(info, adc_rows, electrons.table, electrons.offsets)


#: The columns of a simulated waveform's ``info``, in order.
_INFO_COLUMNS = (
    "particle",
    "momentum_gev",
    "beta_gamma",
    "cluster_density_per_cm",
    "cell_half_width_cm",
    "impact_parameter_cm",
    "track_angle_deg",
    "path_length_cm",
    "n_clusters",
    "n_electrons",
    "drift_time_at_5mm_ns",
    "drift_quadratic_fraction",
    "diffusion_sigma_at_5mm_ns",
    "trigger_offset_ns",
    "rise_time_ns",
    "fall_time_ns",
    "ion_tail_fraction",
    "ion_tail_time_ns",
    "shaping_time_ns",
    "noise_fraction",
    "noise_sigma_adc",
    "noise_correlation_time_ns",
    "baseline_wander_fraction",
    "sampling_rate_ghz",
    "single_electron_amplitude_adc",
    "baseline_adc",
    "polarity",
)

Columns = dict[str, NDArray[Any]]


def _draw_tracks(cfg: SimulationConfig, rng: np.random.Generator, n: int) -> Columns:
    """The track and the cell of each waveform: ``(n,)`` columns named as in ``info``,
    and the ``half_chord_cm`` the clusters lie on."""
    particle = np.asarray(cfg.particles)[rng.integers(len(cfg.particles), size=n)]
    mass_gev = np.array([PARTICLE_MASSES_GEV[p] for p in particle])
    log_p = rng.uniform(np.log(cfg.momentum_gev.low), np.log(cfg.momentum_gev.high), n)
    momentum_gev = np.exp(log_p)
    beta_gamma = momentum_gev / mass_gev
    density_per_cm = cluster_density_per_cm(beta_gamma)
    half_width_cm = _uniform(rng, cfg.cell_half_width_cm, n)
    impact_cm = rng.uniform(0.0, cfg.impact_fraction_max, n) * half_width_cm
    angle_deg = _uniform(rng, cfg.track_angle_deg, n)
    half_chord_cm = np.sqrt(half_width_cm**2 - impact_cm**2)
    path_cm = 2.0 * half_chord_cm / np.cos(np.radians(angle_deg))
    return {
        "particle": particle,
        "momentum_gev": momentum_gev,
        "beta_gamma": beta_gamma,
        "cluster_density_per_cm": density_per_cm,
        "cell_half_width_cm": half_width_cm,
        "impact_parameter_cm": impact_cm,
        "track_angle_deg": angle_deg,
        "path_length_cm": path_cm,
        "n_clusters": rng.poisson(density_per_cm * path_cm),
        "half_chord_cm": half_chord_cm,
    }


def _draw_settings(cfg: SimulationConfig, rng: np.random.Generator, n: int) -> Columns:
    """Drift, front end and digitiser settings of each waveform: ``(n,)`` columns."""
    settings = {
        name: _uniform(rng, getattr(cfg, name), n)
        for name in (
            "drift_time_at_5mm_ns",
            "drift_quadratic_fraction",
            "diffusion_sigma_at_5mm_ns",
            "trigger_offset_ns",
            "rise_time_ns",
            "fall_time_ns",
            "ion_tail_fraction",
            "ion_tail_time_ns",
        )
    }
    front_end_rng = rng.spawn(1)[0]
    settings["shaping_time_ns"] = _uniform(front_end_rng, cfg.shaping_time_ns, n)
    settings["noise_correlation_time_ns"] = _uniform(
        front_end_rng, cfg.noise_correlation_time_ns, n
    )
    settings["noise_fraction"] = _uniform(rng, cfg.noise_fraction, n)
    settings["baseline_wander_fraction"] = _uniform(rng, cfg.baseline_wander_fraction, n)
    rates = np.asarray(cfg.sampling_rates_ghz)
    settings["sampling_rate_ghz"] = rates[rng.integers(len(rates), size=n)]
    settings["single_electron_amplitude_adc"] = _uniform(rng, cfg.single_electron_amplitude_adc, n)
    settings["pedestal_adc"] = _uniform(rng, cfg.pedestal_adc, n)
    settings["polarity"] = np.asarray(cfg.polarities)[rng.integers(len(cfg.polarities), size=n)]
    return settings


@dataclass(frozen=True, eq=False)
class _Electrons:
    """The drifted electrons of a block, in the order they were drawn (``waveform``,
    ``arrival_ns``, ``gain``: ``(n_electrons,)``), and as the
    :class:`~dndx.waveforms.WaveformSet` holds them: ``table`` sorted by waveform and
    time, ``offsets`` ``(n + 1,)`` into it."""

    waveform: NDArray[np.int64]
    arrival_ns: NDArray[np.float64]
    gain: NDArray[np.float64]
    table: pd.DataFrame
    offsets: NDArray[np.int64]


def _draw_electrons(
    cfg: SimulationConfig, rng: np.random.Generator, track: Columns, settings: Columns
) -> _Electrons:
    """Clusters on each chord, electrons in the clusters, their drift and gain."""
    n = len(track["n_clusters"])
    n_clusters = track["n_clusters"]
    n_total_clusters = int(n_clusters.sum())
    cluster_wf = np.repeat(np.arange(n), n_clusters)
    along_cm = rng.uniform(-1.0, 1.0, n_total_clusters) * track["half_chord_cm"][cluster_wf]
    radius_cm = np.hypot(track["impact_parameter_cm"][cluster_wf], along_cm)
    cluster_size = draw_cluster_sizes(rng, n_total_clusters)
    electron_cluster = np.repeat(np.arange(n_total_clusters), cluster_size)
    electron_wf = cluster_wf[electron_cluster]
    cluster_start = np.concatenate([[0], np.cumsum(cluster_size)[:-1]]).astype(np.int64)
    primary = np.zeros(len(electron_cluster), dtype=bool)
    primary[cluster_start] = True
    electron_radius = radius_cm[electron_cluster]
    t5_ns, quadratic = settings["drift_time_at_5mm_ns"], settings["drift_quadratic_fraction"]
    arrival_ns = (
        settings["trigger_offset_ns"][electron_wf]
        + drift_time_ns(electron_radius, t5_ns[electron_wf], quadratic[electron_wf])
        + diffusion_sigma_ns(electron_radius, settings["diffusion_sigma_at_5mm_ns"][electron_wf])
        * rng.standard_normal(len(electron_cluster))
    )
    arrival_ns = np.maximum(arrival_ns, 0.0)
    gain = rng.gamma(cfg.polya_shape, 1.0 / cfg.polya_shape, len(electron_cluster))

    order = np.lexsort((arrival_ns, electron_wf))
    first_cluster = np.concatenate([[0], np.cumsum(n_clusters)[:-1]])
    amplitude_adc = settings["single_electron_amplitude_adc"]
    table = pd.DataFrame(
        {
            "waveform": electron_wf[order].astype(np.int64),
            "time_ns": arrival_ns[order],
            "cluster": (electron_cluster - first_cluster[electron_wf])[order].astype(np.int32),
            "primary": primary[order],
            "amplitude_adc": (gain * amplitude_adc[electron_wf])[order],
        }
    )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(electron_wf, minlength=n), out=offsets[1:])
    return _Electrons(electron_wf, arrival_ns, gain, table, offsets)


def _baseline_adc(cfg: SimulationConfig, settings: Columns) -> NDArray[np.float64]:
    """``(n,)`` the baseline: the pedestal, from the top of the range for a negative pulse."""
    full_scale = 2**cfg.adc_bits - 1
    pedestal = settings["pedestal_adc"]
    return np.where(settings["polarity"] > 0, pedestal, full_scale - pedestal)


def _digitise(
    cfg: SimulationConfig, rng: np.random.Generator, settings: Columns, electrons: _Electrons
) -> list[NDArray[np.uint16]]:
    """Each waveform's ADC samples: its electrons' pulses plus noise, digitised.

    Each sampling rate's waveforms are rendered together; noise is drawn rate by
    rate in a fixed order so the stream stays reproducible.
    """
    full_scale = 2**cfg.adc_bits - 1
    baseline_adc = _baseline_adc(cfg, settings)
    rate_ghz = settings["sampling_rate_ghz"]
    electron_wf = electrons.waveform
    rows: list[NDArray[np.uint16]] = [np.empty(0, np.uint16)] * len(rate_ghz)
    for rate in sorted(set(rate_ghz.tolist())):
        members = np.flatnonzero(rate_ghz == rate)
        of_members = np.isin(electron_wf, members)
        pulses = _render_pulses(
            round(cfg.window_ns * rate),
            rate,
            np.searchsorted(members, electron_wf[of_members]),
            electrons.arrival_ns[of_members],
            electrons.gain[of_members],
            settings["rise_time_ns"][members],
            settings["fall_time_ns"][members],
            settings["ion_tail_fraction"][members],
            settings["ion_tail_time_ns"][members],
            settings["shaping_time_ns"][members],
            settings["baseline_wander_fraction"][members],
            rng,
        )
        noise = _correlate(
            rng.standard_normal(pulses.shape, dtype=np.float32),
            rate,
            settings["noise_correlation_time_ns"][members],
        )
        pulses += settings["noise_fraction"][members, None].astype(np.float32) * noise
        amplitude = (
            settings["polarity"][members] * settings["single_electron_amplitude_adc"][members]
        )
        scale = amplitude.astype(np.float32)
        adc = np.rint(baseline_adc[members, None].astype(np.float32) + scale[:, None] * pulses)
        np.clip(adc, 0, full_scale, out=adc)
        for i, row in zip(members, adc.astype(np.uint16), strict=True):
            rows[i] = row
    return rows


def _render_pulses(
    n_samples: int,
    rate_ghz: float,
    electron_row: NDArray[np.int64],
    arrival_ns: NDArray[np.float64],
    gain: NDArray[np.float64],
    rise_ns: NDArray[np.float64],
    fall_ns: NDArray[np.float64],
    ion_fraction: NDArray[np.float64],
    ion_ns: NDArray[np.float64],
    shaping_ns: NDArray[np.float64],
    wander_fraction: NDArray[np.float64],
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """Noise-free signal plus baseline wander, ``(n_rows, n_samples)``, in units of
    the mean single-electron amplitude.

    Each electron's pulse is ``gain`` times the sum of exponentials of
    :func:`dndx.physics.pulse_exponentials` for ``t`` after its arrival: ``A
    (e^{-t/fall} - e^{-t/rise}) + c (e^{-t/ion} - e^{-t/rise})``, with ``A``
    making the main pulse peak at 1 and ``c`` the ion-tail fraction, through the
    shaping stage where ``shaping_ns > 0``.
    """
    n_rows = len(rise_ns)
    dt_ns = 1.0 / rate_ghz
    position = arrival_ns * rate_ghz
    first_sample = np.ceil(position).astype(np.int64)
    inside = first_sample < n_samples
    row, first_sample = electron_row[inside], first_sample[inside]
    lag_ns = (first_sample - position[inside]) * dt_ns
    flat_index = row * n_samples + first_sample
    time_constants_ns, weights = pulse_exponentials(
        rise_ns, fall_ns, ion_fraction, ion_ns, shaping_ns
    )
    omega = 2.0 * np.pi * np.arange(n_samples // 2 + 1) / n_samples
    phase = np.exp(-1j * omega).astype(np.complex64)
    spectrum = np.zeros((n_rows, len(omega)), dtype=np.complex64)
    for tau_ns, weight in zip(time_constants_ns, weights, strict=True):
        deposits = np.bincount(
            flat_index,
            weights=gain[inside] * np.exp(-lag_ns / tau_ns[row]),
            minlength=n_rows * n_samples,
        ).reshape(n_rows, n_samples)
        decay = np.exp(-dt_ns / tau_ns).astype(np.complex64)
        geometric = decay[:, None] * phase[None, :]
        np.subtract(1, geometric, out=geometric)
        np.divide(weight.astype(np.float32)[:, None], geometric, out=geometric)
        geometric *= np.fft.rfft(deposits.astype(np.float32), axis=1)
        spectrum += geometric
    # Slow baseline wander: a few random low Fourier modes, RMS = wander_fraction.
    modes = rng.standard_normal((n_rows, _WANDER_MODES, 2))
    spectrum[:, 1 : _WANDER_MODES + 1] += (
        (n_samples / 2)
        * (wander_fraction[:, None] / np.sqrt(_WANDER_MODES))
        * (modes[..., 0] + 1j * modes[..., 1])
    )
    return np.fft.irfft(spectrum, n=n_samples, axis=1).astype(np.float32, copy=False)


def _correlate(
    white: NDArray[np.float32], rate_ghz: float, correlation_ns: NDArray[np.float64]
) -> NDArray[np.float32]:
    """Unit-variance noise ``(n_rows, n_samples)`` from white noise of the same shape:
    rows whose correlation time is above 0 go through the first-order low-pass
    ``sqrt(1 - rho^2) / (1 - rho z^-1)``, ``rho = exp(-1 / (rate * correlation))``
    (an AR(1) process: autocorrelation ``rho^k`` at a lag of ``k`` samples, the
    spectrum of an RC low-pass of cutoff ``1 / (2 pi correlation)``), applied
    circularly over the window, which is thousands of correlation times long;
    the others stay as they are.
    """
    rows = np.flatnonzero(correlation_ns > 0)
    if not len(rows):
        return white
    rho = np.exp(-1.0 / (rate_ghz * correlation_ns[rows]))
    n_samples = white.shape[1]
    phase = np.exp(-2j * np.pi * np.arange(n_samples // 2 + 1) / n_samples)
    response = (np.sqrt(1.0 - rho**2)[:, None] / (1.0 - rho[:, None] * phase)).astype(np.complex64)
    white[rows] = np.fft.irfft(np.fft.rfft(white[rows], axis=1) * response, n=n_samples, axis=1)
    return white
