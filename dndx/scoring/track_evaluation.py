"""The track-level evaluation: every counting method on the cells of the track sets.

The cells of a track set go through the steps the test waveforms go through,
in memory, chunk by chunk: candidates and truth labels
(:func:`dndx.truth.preparation.prepare_waveforms`), the peak finder's probabilities,
the counter's input (:func:`dndx.chain.encoding.encode_scored_candidates`), the
cluster counter, the D2 peaks and the time clusterizations tuned on
validation (:func:`dndx.scoring.evaluation.count_clusters`). Each cell also keeps its
true count, the limit, and its charge (:func:`dndx.truth.charge.cell_charge`:
calibrated in electrons for simulated cells) for the dE/dx reference. Then
per track dN/dx and dE/dx, and per particle pair and momentum the separation
power (:mod:`dndx.scoring.separation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.chain.baselines import d2_peaks
from dndx.chain.encoding import encode_scored_candidates, samples_per_bin
from dndx.config import PrepareConfig, QualityGateConfig
from dndx.scoring.evaluation import (
    COUNTERS,
    BaselineTuning,
    SplitInputs,
    TargetCheck,
    assemble_split,
    count_clusters,
)
from dndx.scoring.separation import particle_pairs, resolution_table, separation_table, track_table
from dndx.truth.charge import cell_charge
from dndx.truth.preparation import prepare_waveforms
from dndx.waveforms import WaveformSet

__all__ = [
    "DEDX",
    "TRACK_METHODS",
    "TRUTH",
    "Predict",
    "SeparationTargets",
    "TrackEvaluation",
    "check_separation_targets",
    "count_track_cells",
    "evaluate_tracks",
    "momentum_key",
]

#: The true count of primary clusters: its separation is the Poisson limit.
TRUTH = "truth"
#: The calibrated charge of a cell; per track, the dE/dx truncated mean.
DEDX = "dedx"
#: The per-track measures in report order: the limit, the counters, dE/dx.
TRACK_METHODS: tuple[str, ...] = (TRUTH, *COUNTERS, DEDX)

#: A model applied to a batch: ``(n, ...)`` float32 inputs to ``(n,)`` outputs.
Predict = Callable[[NDArray[np.float32]], NDArray[np.floating]]


def _score_cells(
    data: WaveformSet, prepare: PrepareConfig, peak_finder: Predict, score_threshold: float
) -> SplitInputs:
    """The cells of ``data`` prepared as the other splits are, their candidates scored
    by ``peak_finder`` and decided at ``score_threshold``."""
    prepared = prepare_waveforms(data, prepare)
    probability = np.asarray(peak_finder(prepared.windows), dtype=np.float64)
    scores = prepared.candidates[["waveform_id", "sample", "label"]].assign(
        probability=probability, detected=probability >= score_threshold
    )
    return assemble_split(
        prepared.waveforms,
        scores,
        data.adc,
        data.info["waveform_id"].to_numpy(),
        data.info["sampling_rate_ghz"].to_numpy(),
        prepare.candidates.model_sampling_rate_ghz,
    )


def count_track_cells(
    data: WaveformSet,
    prepare: PrepareConfig,
    n_bins: int,
    window_ns: float,
    peak_finder: Predict,
    cluster_counter: Predict,
    score_threshold: float,
    tuning: BaselineTuning,
) -> pd.DataFrame:
    """Count the clusters of every cell of ``data`` (track cells from :mod:`dndx.simulation.tracks`)
    with every method.

    Args:
        data: the cells, with ``track_id`` in ``info``.
        prepare: the candidates' and labels' settings, as for the other splits.
        n_bins: bins of the counter's input.
        window_ns: the digitiser window, which the input's bins cover.
        peak_finder: ``(n_candidates, window_length)`` windows to probabilities.
        cluster_counter: ``(n_cells, n_bins, channels)`` inputs to counts.
        score_threshold: the peak finder's working point.
        tuning: the baselines' thresholds and windows, chosen on validation.

    Returns:
        One row per cell, in the order of ``data``: ``waveform_id``,
        ``track_id``, ``particle``, ``momentum_gev``, ``path_length_cm``, then one
        column per name of :data:`TRACK_METHODS`: the counts, and the charge
        (:func:`dndx.truth.charge.cell_charge`) under ``dedx``.
    """
    cells = _score_cells(data, prepare, peak_finder, score_threshold)
    rate = prepare.candidates.model_sampling_rate_ghz
    counter_input = encode_scored_candidates(
        cells.samples,
        cells.lengths,
        cells.candidate_sample,
        cells.candidate_probability,
        score_threshold,
        n_bins,
        samples_per_bin(window_ns, rate, n_bins),
    )
    info = data.info
    d2 = d2_peaks(cells.samples, cells.lengths, tuning.d2.t1_sigma, tuning.d2.t2)
    cnn = np.asarray(cluster_counter(counter_input.encoded), dtype=np.float64)
    counts = count_clusters(cells, d2, tuning, cnn)
    table = info.set_index("waveform_id").loc[
        cells.waveform_id, ["track_id", "particle", "momentum_gev", "path_length_cm"]
    ]
    table[TRUTH] = cells.n_clusters
    for name in COUNTERS:
        table[name] = counts[name]
    charge = pd.Series(cell_charge(data, rate), index=info["waveform_id"].to_numpy())
    table[DEDX] = charge.loc[cells.waveform_id].to_numpy()
    return table.reset_index()


def momentum_key(momentum_gev: float) -> str:
    """A momentum as a metrics key, free of the dots that separate key levels.

    >>> momentum_key(10.0), momentum_key(2.5)
    ('10GeV', '2_5GeV')
    """
    return f"{momentum_gev:g}".replace(".", "_") + "GeV"


@dataclass(frozen=True)
class SeparationTargets:
    """What the counter must keep of the separation power: on ``pair``
    (``train_cluster_counter.separation_pair``) at the ``quality_gate``'s
    ``separation_momentum_gev``, at least ``min_separation_ratio_to_poisson`` of the
    Poisson limit and ``min_separation_gain_over_d2`` times the separation of D2 with
    time clusterization."""

    gate: QualityGateConfig
    pair: tuple[str, str]


@dataclass(frozen=True, eq=False)
class TrackEvaluation:
    """The track-level evaluation: per-track dN/dx and dE/dx, resolutions and
    separation powers.

    Attributes:
        methods: the per-track measures in report order: dN/dx of each count
            column, then dE/dx.
        reference: the measure of the limit, the true counts' dN/dx.
        keep_fraction: the share of cells in the dE/dx truncated mean.
        tracks: :func:`track_table`, one row per track.
        resolution: :func:`resolution_table` of every method.
        separation: :func:`separation_table` of every method and pair.
        targets: :func:`check_separation_targets`.
    """

    methods: tuple[str, ...]
    reference: str
    keep_fraction: float
    tracks: pd.DataFrame
    resolution: pd.DataFrame
    separation: pd.DataFrame
    targets: tuple[TargetCheck, ...]

    @property
    def momenta_gev(self) -> list[float]:
        """The momenta of the track sets, ascending."""
        return sorted(self.tracks["momentum_gev"].unique().tolist())

    @property
    def headline_pair(self) -> tuple[str, str] | None:
        """The first pair of particles (π / K by default); None with one particle."""
        if self.separation.empty:
            return None
        first = self.separation.iloc[0]
        return str(first["particle_a"]), str(first["particle_b"])

    def pair_table(self, particle_a: str, particle_b: str) -> pd.DataFrame:
        """The rows of :attr:`separation` of one pair."""
        rows = self.separation
        return rows[(rows["particle_a"] == particle_a) & (rows["particle_b"] == particle_b)]

    def pair_factors(self, particle_a: str, particle_b: str) -> pd.DataFrame:
        """:meth:`pair_table` of the count methods, with the two factors of each
        one's S / S_Poisson = ``contrast`` / ``spread``: ``contrast``, the pair's
        difference of mean dN/dx over the reference's, and ``spread``, the pair's
        summed σ over the reference's. A counter that shrinks its counts toward a
        mean loses contrast; a noisy one has the larger spread. (The charge
        measure has another unit: left out.)"""
        spreads = self.resolution.set_index(["method", "particle", "momentum_gev"])

        def factor(row: Any, column: str) -> float:
            a, b = (
                spreads.loc[(row.method, p, row.momentum_gev), column]
                for p in (particle_a, particle_b)
            )
            ta, tb = (
                spreads.loc[(self.reference, p, row.momentum_gev), column]
                for p in (particle_a, particle_b)
            )
            return float(abs(a - b) / abs(ta - tb) if column == "mean" else (a + b) / (ta + tb))

        table = self.pair_table(particle_a, particle_b)
        table = table[table["method"].isin(self.methods[:-1])]
        return table.assign(
            contrast=[factor(row, "mean") for row in table.itertuples()],
            spread=[factor(row, "sigma") for row in table.itertuples()],
        )

    def to_metrics(self) -> dict[str, object]:
        """Nested, JSON-ready figures for the DVC metrics file (DVC joins the levels
        with dots); NaN becomes ``None``.

        Keys: ``n_tracks``, ``n_cells`` (mean per track), ``keep_fraction``;
        ``separation.<a>_<b>.<momentum>.<method>.{S, S_error, ratio, ratio_error}``
        where ``ratio`` is S over the reference's; ``resolution.<particle>.<momentum>.
        <method>.{mean, resolution, resolution_error}``; ``target.<name>.{value,
        limit, passed}``.
        """
        separation: dict[str, dict[str, dict[str, dict[str, float | None]]]] = {}
        for row in self.separation.itertuples():
            pair = separation.setdefault(f"{row.particle_a}_{row.particle_b}", {})
            pair.setdefault(momentum_key(float(row.momentum_gev)), {})[str(row.method)] = {
                "S": _finite(row.separation),
                "S_error": _finite(row.separation_error),
                "ratio": _finite(row.ratio),
                "ratio_error": _finite(row.ratio_error),
            }
        resolution: dict[str, dict[str, dict[str, dict[str, float | None]]]] = {}
        for row in self.resolution.itertuples():
            particle = resolution.setdefault(str(row.particle), {})
            particle.setdefault(momentum_key(float(row.momentum_gev)), {})[str(row.method)] = {
                "mean": _finite(row.mean),
                "resolution": _finite(row.resolution),
                "resolution_error": _finite(row.resolution_error),
            }
        return {
            "n_tracks": len(self.tracks),
            "n_cells": _finite(self.tracks["n_cells"].mean()),
            "keep_fraction": self.keep_fraction,
            "separation": separation,
            "resolution": resolution,
            "target": {
                check.name: {
                    "value": _finite(check.value),
                    "limit": check.limit,
                    "passed": check.passed,
                }
                for check in self.targets
            },
        }


def _finite(value: object) -> float | None:
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def evaluate_tracks(
    cells: pd.DataFrame,
    keep_fraction: float,
    targets: SeparationTargets | None = None,
    counts: Sequence[str] = TRACK_METHODS[:-1],
    reference: str = TRUTH,
    charge: str = DEDX,
) -> TrackEvaluation:
    """dN/dx of every count column and dE/dx of the charge on the tracks of ``cells``.

    Args:
        cells: one row per cell (:func:`count_track_cells`), the track sets of
            every particle and momentum; the particles are paired in the order
            they first appear.
        keep_fraction: the share of cells the dE/dx truncated mean keeps.
        targets: the thresholds checked (none without them).
        counts: the count columns, the reference among them.
        reference: the count column of the limit.
        charge: the per-cell charge column.

    >>> rng = np.random.default_rng(1)
    >>> cells = pd.DataFrame({"track_id": np.repeat(np.arange(40), 50),
    ...                       "particle": np.repeat(["pi", "K"], 1000), "momentum_gev": 10.0,
    ...                       "path_length_cm": 1.0})
    >>> cells["truth"] = rng.poisson(np.repeat([14.0, 12.0], 1000))
    >>> cells["cnn"] = cells["truth"] + rng.normal(0.0, 2.0, 2000)
    >>> cells["dedx"] = cells["truth"] * rng.gamma(1.5, 1.0, 2000)
    >>> result = evaluate_tracks(cells, 0.7, counts=["truth", "cnn"])
    >>> result.methods
    ('truth', 'cnn', 'dedx')
    >>> ratio = result.pair_table("pi", "K").set_index("method")["ratio"]
    >>> float(ratio["truth"]), bool(ratio["dedx"] < ratio["cnn"] < 1.0)
    (1.0, True)
    """
    methods = (*counts, charge)
    tracks = track_table(cells, counts, charge, keep_fraction)
    pairs = particle_pairs(list(dict.fromkeys(cells["particle"])))
    separation = separation_table(tracks, methods, reference, pairs)
    return TrackEvaluation(
        methods=methods,
        reference=reference,
        keep_fraction=keep_fraction,
        tracks=tracks,
        resolution=resolution_table(tracks, methods),
        separation=separation,
        targets=() if targets is None else check_separation_targets(separation, targets),
    )


def check_separation_targets(
    separation: pd.DataFrame, targets: SeparationTargets
) -> tuple[TargetCheck, ...]:
    """The track-level thresholds as checks on :func:`separation_table`'s rows; a
    figure that could not be measured (pair or momentum absent) fails.

    >>> from dndx.config import load_params
    >>> rows = pd.DataFrame({"method": ["cnn", "d2_clusterization"], "particle_a": "pi",
    ...                      "particle_b": "K", "momentum_gev": 10.0, "separation": [4.0, 2.0],
    ...                      "separation_error": 0.3, "ratio": [0.8, 0.4], "ratio_error": 0.05})
    >>> targets = SeparationTargets(load_params().quality_gate, ("pi", "K"))
    >>> [(c.name, c.value, c.passed) for c in check_separation_targets(rows, targets)]
    [('separation_ratio_to_poisson', 0.8, False), ('separation_gain_over_d2', 2.0, True)]
    """
    (a, b), gate = targets.pair, targets.gate
    chosen = separation[
        (separation["particle_a"] == a)
        & (separation["particle_b"] == b)
        & np.isclose(separation["momentum_gev"], gate.separation_momentum_gev)
    ].set_index("method")

    def figure(method: str, column: str) -> float:
        return float(chosen.loc[method, column]) if method in chosen.index else math.nan

    d2 = figure("d2_clusterization", "separation")
    where = f"{a}/{b} at {gate.separation_momentum_gev:g} GeV/c"
    return (
        TargetCheck.against(
            gate,
            "separation_ratio_to_poisson",
            f"LSTM → CNN S / S_Poisson, {where}",
            figure("cnn", "ratio"),
        ),
        TargetCheck.against(
            gate,
            "separation_gain_over_d2",
            f"LSTM → CNN S over D2 → time clusterization S, {where}",
            figure("cnn", "separation") / d2 if d2 > 0 else math.nan,
        ),
    )
