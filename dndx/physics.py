"""Physics of ionisation, drift and the front-end pulse in He 90 / iC4H10 10.

The numbers are those of ``docs/physics.md``: the cluster density against
beta*gamma from the Delphes TrackCovariance parametrisation, the helium
cluster-size distribution, a monotonic non-saturated drift-time relation,
sqrt(r) diffusion and a bi-exponential pulse.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CLUSTER_DENSITY_BETA_GAMMA",
    "CLUSTER_DENSITY_PER_CM",
    "CLUSTER_SIZE_PROBABILITIES",
    "cluster_density_per_cm",
    "diffusion_sigma_ns",
    "draw_cluster_sizes",
    "drift_time_ns",
    "pulse_peak_delay_ns",
    "pulse_peak_norm",
]

#: beta*gamma points of the cluster-density table (docs/physics.md).
CLUSTER_DENSITY_BETA_GAMMA = np.array(
    [0.5, 0.8, 1, 2, 3, 4, 5, 8, 10, 12, 15, 20, 50, 100, 200, 500, 1000], dtype=float
)
#: Primary clusters per cm at those points.
CLUSTER_DENSITY_PER_CM = np.array(
    [42.94, 23.6, 18.97, 12.98, 12.2, 12.13, 12.24, 12.73, 13.03, 13.29, 13.63, 14.08,
     15.56, 16.43, 16.8, 16.95, 16.98],
    dtype=float,
)  # fmt: skip


def _cluster_size_probabilities(max_size: int = 20) -> NDArray[np.float64]:
    measured = np.array([76.6, 12.5, 4.6, 2.0, 1.2, 0.75, 0.50, 0.36, 0.25, 0.19]) / 100
    n_tail = np.arange(len(measured) + 1, max_size + 1)
    tail = measured[-1] * (len(measured) / n_tail) ** 2
    probabilities = np.concatenate([measured, tail])
    return probabilities / probabilities.sum()


#: P(n electrons in a cluster) for n = 1..20: measured to 10, 1/n^2 tail, renormalised.
CLUSTER_SIZE_PROBABILITIES = _cluster_size_probabilities()


def cluster_density_per_cm(beta_gamma: ArrayLike) -> NDArray[np.float64]:
    """Mean primary clusters per cm, interpolated linearly in log(beta*gamma).

    Outside the table the end values hold.

    >>> float(cluster_density_per_cm(4.0))
    12.13
    >>> round(float(cluster_density_per_cm(1e5)), 2)
    16.98
    """
    log_bg = np.log(np.asarray(beta_gamma, dtype=float))
    return np.interp(log_bg, np.log(CLUSTER_DENSITY_BETA_GAMMA), CLUSTER_DENSITY_PER_CM)


def draw_cluster_sizes(rng: np.random.Generator, n_clusters: int) -> NDArray[np.int64]:
    """Electrons per cluster, shape ``(n_clusters,)``, drawn from the helium distribution."""
    cumulative = np.cumsum(CLUSTER_SIZE_PROBABILITIES)
    cumulative[-1] = 1.0
    return np.searchsorted(cumulative, rng.random(n_clusters), side="right").astype(np.int64) + 1


def drift_time_ns(
    radius_cm: ArrayLike, time_at_5mm_ns: ArrayLike, quadratic_fraction: ArrayLike
) -> NDArray[np.float64]:
    """Drift time t(r) = r/v0 + r^2/a of an electron starting ``radius_cm`` from the wire.

    ``v0`` and ``a`` are set so that t(0.5 cm) = ``time_at_5mm_ns`` with the
    share ``quadratic_fraction`` coming from the r^2 term; t is monotonic in r.

    >>> float(drift_time_ns(0.5, 200.0, 0.4))
    200.0
    """
    r = np.asarray(radius_cm, dtype=float)
    t5 = np.asarray(time_at_5mm_ns, dtype=float)
    q = np.asarray(quadratic_fraction, dtype=float)
    x = r / 0.5
    return t5 * ((1.0 - q) * x + q * x * x)


def diffusion_sigma_ns(radius_cm: ArrayLike, sigma_at_5mm_ns: ArrayLike) -> NDArray[np.float64]:
    """Gaussian arrival-time spread growing like sqrt(r).

    >>> float(diffusion_sigma_ns(0.5, 3.0))
    3.0
    """
    r = np.asarray(radius_cm, dtype=float)
    return np.asarray(sigma_at_5mm_ns, dtype=float) * np.sqrt(np.maximum(r, 0.0) / 0.5)


def pulse_peak_delay_ns(rise_time_ns: ArrayLike, fall_time_ns: ArrayLike) -> NDArray[np.float64]:
    """Time from an electron's arrival to the maximum of its bi-exponential pulse.

    The pulse is exp(-t/fall) - exp(-t/rise); its maximum lies at
    rise*fall/(fall - rise) * ln(fall/rise).

    >>> round(float(pulse_peak_delay_ns(1.0, 4.0)), 3)
    1.848
    """
    rise = np.asarray(rise_time_ns, dtype=float)
    fall = np.asarray(fall_time_ns, dtype=float)
    return rise * fall / (fall - rise) * np.log(fall / rise)


def pulse_peak_norm(rise_time_ns: ArrayLike, fall_time_ns: ArrayLike) -> NDArray[np.float64]:
    """Factor that scales exp(-t/fall) - exp(-t/rise) to a unit maximum."""
    rise = np.asarray(rise_time_ns, dtype=float)
    fall = np.asarray(fall_time_ns, dtype=float)
    t_peak = pulse_peak_delay_ns(rise, fall)
    return 1.0 / (np.exp(-t_peak / fall) - np.exp(-t_peak / rise))
