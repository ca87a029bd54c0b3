"""Physics of ionisation, drift and the front-end pulse in He 90 / iC4H10 10.

The numbers are those of ``docs/physics.md``: the cluster density against
beta*gamma from the Delphes TrackCovariance parametrisation, the helium
cluster-size distribution, a monotonic non-saturated drift-time relation,
sqrt(r) diffusion, a bi-exponential pulse with an ion tail, and the front
end's shaping stage, an RC integrator, which keeps the pulse a sum of
exponentials.
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
    "pulse_exponentials",
    "pulse_peak_delay_ns",
    "pulse_peak_norm",
    "shaped_pulse_peak",
]

#: A shaping time within this fraction of one of the pulse's time constants is moved
#: to twice that distance: there the partial fractions of the shaped pulse cancel
#: and lose precision, and the response changes by less than this fraction.
SHAPING_SEPARATION = 1e-3

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


def _separated(
    shaping_ns: NDArray[np.float64], *time_constants_ns: NDArray[np.float64]
) -> NDArray[np.float64]:
    for tau_ns in time_constants_ns:
        close = (shaping_ns > 0) & (np.abs(shaping_ns - tau_ns) < SHAPING_SEPARATION * shaping_ns)
        shaping_ns = np.where(close, tau_ns * (1.0 + 2.0 * SHAPING_SEPARATION), shaping_ns)
    return shaping_ns


def shaped_pulse_peak(
    rise_time_ns: ArrayLike, fall_time_ns: ArrayLike, shaping_time_ns: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Delay to the maximum of the main pulse after the shaping stage, and the factor
    that scales that maximum to 1, each ``(n,)``.

    The stage is an RC integrator of unit area, ``exp(-t/shaping) / shaping``;
    convolved with it, ``exp(-t/tau)`` becomes ``tau / (tau - shaping)
    (exp(-t/tau) - exp(-t/shaping))``, so the shaped main pulse is a sum of three
    exponentials, whose single maximum is found by bisection on its slope. A
    shaping time of 0 is no stage: the values are then those of
    :func:`pulse_peak_delay_ns` and :func:`pulse_peak_norm`, to the bit.

    >>> delay, norm = shaped_pulse_peak([1.0, 1.0, 1.0], [4.0, 4.0, 4.0], [0.0, 1e-6, 2.0])
    >>> [round(float(d), 3) for d in delay], [round(float(n), 3) for n in norm]
    ([1.848, 1.848, 4.02], [2.117, 2.117, 2.873])
    """
    rise, fall, shaping = np.broadcast_arrays(
        *(
            np.atleast_1d(np.asarray(a, dtype=float))
            for a in (rise_time_ns, fall_time_ns, shaping_time_ns)
        )
    )
    delay = np.array(pulse_peak_delay_ns(rise, fall), dtype=float)
    norm = np.array(pulse_peak_norm(rise, fall), dtype=float)
    shaped = shaping > 0
    if not shaped.any():
        return delay, norm
    r, f = rise[shaped], fall[shaped]
    s = _separated(shaping[shaped], r, f)
    tau = np.stack([f, r, s])
    a_fall, a_rise = f / (f - s), -r / (r - s)
    weight = np.stack([a_fall, a_rise, -(a_fall + a_rise)])
    # A convolution of three exponentials rises, then falls: its slope changes sign
    # once, before the sum of the time constants times 3.
    low, high = np.zeros_like(s), 3.0 * (r + f + s)
    for _ in range(60):
        middle = 0.5 * (low + high)
        rising = (-(weight / tau) * np.exp(-middle / tau)).sum(axis=0) > 0
        low, high = np.where(rising, middle, low), np.where(rising, high, middle)
    peak_ns = 0.5 * (low + high)
    delay[shaped] = peak_ns
    norm[shaped] = 1.0 / (weight * np.exp(-peak_ns / tau)).sum(axis=0)
    return delay, norm


def pulse_exponentials(
    rise_time_ns: ArrayLike,
    fall_time_ns: ArrayLike,
    ion_tail_fraction: ArrayLike,
    ion_tail_time_ns: ArrayLike,
    shaping_time_ns: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Time constants and weights of the single-electron pulse, each ``(n_terms, n)``.

    The pulse is ``sum_k weight[k] exp(-t / tau[k])`` for ``t`` after the
    electron's arrival: ``A (e^{-t/fall} - e^{-t/rise}) + c (e^{-t/ion} -
    e^{-t/rise})``, with ``A`` making the main pulse peak at 1 and ``c`` the
    ion-tail fraction, then through the shaping stage (:func:`shaped_pulse_peak`),
    after which the front end's gain brings the main pulse's maximum back to 1.
    Three terms (fall, rise, ion) when no waveform is shaped, a fourth (the
    shaping time; weight 0 where a waveform is not) otherwise. The weights sum to
    0: the pulse starts at 0.

    >>> tau, weight = pulse_exponentials([1.0], [4.0], [0.0], [100.0], [2.0])
    >>> t = np.linspace(0.0, 40.0, 40001)[:, None]
    >>> pulse = (weight[:, 0] * np.exp(-t / tau[:, 0])).sum(axis=1)
    >>> round(float(pulse.max()), 6), round(float(t[pulse.argmax(), 0]), 3)
    (1.0, 4.02)
    """
    rise, fall, ion_fraction, ion, shaping = np.broadcast_arrays(
        *(
            np.atleast_1d(np.asarray(a, dtype=float))
            for a in (
                rise_time_ns,
                fall_time_ns,
                ion_tail_fraction,
                ion_tail_time_ns,
                shaping_time_ns,
            )
        )
    )
    if not (shaping > 0).any():
        norm = pulse_peak_norm(rise, fall)
        return np.stack([fall, rise, ion]), np.stack([norm, -(norm + ion_fraction), ion_fraction])
    _, norm = shaped_pulse_peak(rise, fall, shaping)
    ion_weight = ion_fraction * (norm / pulse_peak_norm(rise, fall))
    shaped = shaping > 0
    s = np.where(shaped, _separated(shaping, rise, fall, ion), 1.0)
    weight = np.stack(
        [
            np.where(shaped, norm * fall / (fall - s), norm),
            np.where(shaped, rise / (rise - s), 1.0) * -(norm + ion_weight),
            np.where(shaped, ion / (ion - s), 1.0) * ion_weight,
        ]
    )
    return np.stack([fall, rise, ion, s]), np.vstack(
        [weight, np.where(shaped, -weight.sum(axis=0), 0.0)]
    )
