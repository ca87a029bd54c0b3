"""Physics invariants of the simulator against the numbers of docs/physics.md."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dndx.config import PARTICLE_MASSES_GEV, Range, load_params
from dndx.physics import (
    CLUSTER_SIZE_PROBABILITIES,
    cluster_density_per_cm,
    diffusion_sigma_ns,
    drift_time_ns,
)
from dndx.simulation.generator import simulate_range


def _simulate(n: int, **fields: object):
    sim = load_params().simulate
    cfg = dataclasses.replace(sim, n_train=n, block_size=n, chunk_size=n, **fields)
    return simulate_range(cfg, "train", 0, n)


@pytest.mark.parametrize(
    ("particle", "beta_gamma", "table"), [("pi", 4.0, 12.13), ("mu", 100.0, 16.43)]
)
def test_mean_cluster_density_matches_table(particle: str, beta_gamma: float, table: float) -> None:
    momentum = beta_gamma * PARTICLE_MASSES_GEV[particle]
    data = _simulate(3000, particles=(particle,), momentum_gev=Range(momentum, momentum))
    density = data.info["n_clusters"].sum() / data.info["path_length_cm"].sum()
    assert density == pytest.approx(table, rel=0.03)


def test_density_interpolates_in_log_beta_gamma() -> None:
    between = cluster_density_per_cm(np.sqrt(2.0 * 3.0))
    assert between == pytest.approx((12.98 + 12.2) / 2)


def test_mean_cluster_size_is_helium_like() -> None:
    sizes = np.arange(1, len(CLUSTER_SIZE_PROBABILITIES) + 1)
    assert 1.5 <= float(sizes @ CLUSTER_SIZE_PROBABILITIES) <= 1.65
    data = _simulate(2000)
    mean_size = data.info["n_electrons"].sum() / data.info["n_clusters"].sum()
    assert 1.5 <= mean_size <= 1.65
    primaries = data.electrons["primary"].sum()
    assert primaries == data.info["n_clusters"].sum()


def test_cluster_count_is_poisson() -> None:
    fixed = {
        "particles": ("pi",),
        "momentum_gev": Range(5.0, 5.0),
        "cell_half_width_cm": Range(0.5, 0.5),
        "impact_fraction_max": 0.0,
        "track_angle_deg": Range(0.0, 0.0),
    }
    counts = _simulate(5000, **fixed).info["n_clusters"].to_numpy()
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.1)


def test_drift_time_is_monotonic_and_in_range() -> None:
    radius = np.linspace(0.0, 0.8, 200)
    for t5, q in [(150.0, 0.2), (250.0, 0.6), (200.0, 0.0), (200.0, 1.0)]:
        times = drift_time_ns(radius, t5, q)
        assert np.all(np.diff(times) > 0)
        assert drift_time_ns(0.5, t5, q) == pytest.approx(t5)
    assert np.all(np.diff(diffusion_sigma_ns(radius, 3.0)) >= 0)


def test_noise_of_signal_free_samples_matches_parameter() -> None:
    data = _simulate(400, baseline_wander_fraction=Range(0.0, 0.0), sampling_rates_ghz=(1.5,))
    info = data.info
    ratios = []
    for i in range(len(data)):
        first_arrival = data.electrons["time_ns"].to_numpy()[data.electron_offsets[i]]
        quiet = data.adc[i][: int((first_arrival - 10.0) * 1.5)].astype(float)
        expected = np.sqrt(info["noise_sigma_adc"][i] ** 2 + 1 / 12)  # + quantisation
        ratios.append(np.std(quiet - info["baseline_adc"][i]) / expected)
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.03)


def test_waveforms_cover_the_digitiser_settings() -> None:
    data = _simulate(300)
    info = data.info
    lengths = data.adc.lengths
    assert set(info["sampling_rate_ghz"]) == {1.2, 1.5, 2.0}
    assert np.all(lengths == np.rint(2000.0 * info["sampling_rate_ghz"]))
    assert set(info["polarity"]) == {-1, 1}
    assert data.adc.values.dtype == np.uint16 and data.adc.values.max() <= 4095
    # The signal goes the way of the polarity, from the pedestal.
    for i in range(10):
        excursion = data.adc[i].astype(float) - info["baseline_adc"][i]
        peak = excursion[np.argmax(np.abs(excursion))]
        assert np.sign(peak) == info["polarity"][i]
