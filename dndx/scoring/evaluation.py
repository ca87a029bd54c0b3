"""The ``evaluate`` stage's figures: models and classical baselines side by side.

Everything is scored on the test set against truth (docs/physics.md, "Metrics"):

* **candidates**: the LSTM's decisions on the prepared candidates, against
  their labels: precision, recall, F1, ROC AUC and efficiency x purity
  (precision x recall) at the selected score threshold;
* **peaks**: the peaks each finder reports, matched one-to-one to the expected
  peaks: efficiency, purity, their product and F1, overall, per drift-time bin
  and per noise level. The LSTM's peaks are its detected candidates; the D2
  baseline runs on the same normalised waveforms with thresholds tuned on
  validation; all candidates together show the ceiling that candidate finding
  leaves to any classifier;
* **counting**: the number of primary clusters each method reconstructs per
  cell, against the true number: the CNN, and time clusterization of the LSTM's
  peaks and of the D2 peaks (windows tuned on validation); relative bias,
  RMS / sqrt(N) and the linearity slope, overall and per particle and momentum.

The user's thresholds (``params.yaml`` ``quality_gate``; the source studies'
figures of docs/physics.md, "How dndx implements this") become pass/fail checks,
reported whatever they say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from dndx.chain.baselines import d2_peaks, time_clusterize
from dndx.chain.preprocessing import normalise
from dndx.config import EvaluateConfig, QualityGateConfig
from dndx.errors import InputError
from dndx.ragged import Ragged
from dndx.scoring.metrics import (
    binary_scores,
    count_matches,
    counting_metrics,
    counting_table,
    peak_table_by_drift_time,
    peak_table_by_waveform,
    roc_auc,
    roc_curve,
)
from dndx.scoring.quality_gate import THRESHOLDS
from dndx.scoring.tuning import ClusterTuning, D2Tuning, tune_d2, tune_time_clusterization
from dndx.truth.labels import match_peaks

__all__ = [
    "CLUSTERIZATIONS",
    "COUNTERS",
    "PEAK_FINDERS",
    "BaselineTuning",
    "CandidateEvaluation",
    "CountingEvaluation",
    "Evaluation",
    "PeakEvaluation",
    "SplitInputs",
    "TargetCheck",
    "align_by_id",
    "assemble_split",
    "check_targets",
    "count_clusters",
    "evaluate_candidates",
    "evaluate_counting",
    "evaluate_peaks",
    "evaluate_split",
    "tune_baselines",
]

#: The peak finders scored against truth, in report order.
PEAK_FINDERS: tuple[str, ...] = ("lstm", "d2", "candidates")
#: The cluster counters scored against the true cluster count, in report order.
#: ``truth_clusterization`` is a reference, not a method: the time clusterization
#: of the expected peaks themselves, i.e. what perfect peak finding would give it.
COUNTERS: tuple[str, ...] = (
    "cnn",
    "lstm_clusterization",
    "d2_clusterization",
    "truth_clusterization",
)
#: The counters whose clusterization window is tuned on validation.
CLUSTERIZATIONS: tuple[str, ...] = COUNTERS[1:]


@dataclass(frozen=True, eq=False)
class SplitInputs:
    """What the evaluation needs of one split, one row per waveform, aligned.

    Attributes:
        waveform_id: ``(n_waveforms,)`` int64, unique.
        samples: ``(n_waveforms, n_samples)`` float32 normalised waveforms
            (:func:`dndx.chain.preprocessing.normalise`) at the model rate.
        lengths: ``(n_waveforms,)`` valid samples per row.
        sampling_rate_ghz: the model rate of ``samples`` and candidate samples.
        n_clusters: ``(n_waveforms,)`` the true number of primary clusters.
        particle: ``(n_waveforms,)`` particle names.
        momentum_gev: ``(n_waveforms,)``.
        noise_fraction: ``(n_waveforms,)`` noise sigma over the 1-electron amplitude.
        expected_time_ns: expected peak times per waveform, sorted in each row.
        expected_drift_time_ns: ``(n_expected,)`` the drift time of each expected peak.
        candidate_sample: candidate sample indices per waveform, sorted in each row.
        candidate_label: ``(n_candidates,)`` 1 for a candidate matched to an expected peak.
        candidate_probability: ``(n_candidates,)`` the peak finder's output.
        candidate_detected: ``(n_candidates,)`` the peak finder's decision.
    """

    waveform_id: NDArray[np.int64]
    samples: NDArray[np.float32]
    lengths: NDArray[np.int64]
    sampling_rate_ghz: float
    n_clusters: NDArray[np.int64]
    particle: NDArray[np.str_]
    momentum_gev: NDArray[np.float64]
    noise_fraction: NDArray[np.float64]
    expected_time_ns: Ragged
    expected_drift_time_ns: NDArray[np.float64]
    candidate_sample: Ragged
    candidate_label: NDArray[np.int8]
    candidate_probability: NDArray[np.float64]
    candidate_detected: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.waveform_id)

    @property
    def expected_samples(self) -> Ragged:
        """Expected peak positions in samples at the model rate."""
        return Ragged(
            self.expected_time_ns.values * self.sampling_rate_ghz, self.expected_time_ns.offsets
        )

    @property
    def detected_samples(self) -> Ragged:
        """The sample of each candidate the peak finder calls a peak, per waveform."""
        return _select(self.candidate_sample, self.candidate_detected)

    def to_time_ns(self, peak_samples: Ragged) -> Ragged:
        """Peak samples at the model rate as times in ns."""
        return Ragged(peak_samples.values / self.sampling_rate_ghz, peak_samples.offsets)


def _select(rows: Ragged, keep: NDArray[np.bool_]) -> Ragged:
    lengths = np.bincount(rows.row_index()[keep], minlength=len(rows)).astype(np.int64)
    return Ragged.from_lengths(rows.values[keep], lengths)


def _positions(ids: ArrayLike, of: ArrayLike, what: str) -> NDArray[np.int64]:
    """The row of each of ``ids`` in the unique ``of``; an InputError names the missing ones."""
    index = pd.Index(np.asarray(of))
    if not index.is_unique:
        raise InputError(f"{what}: waveform_id is not unique")
    position = index.get_indexer(np.asarray(ids))
    missing = np.asarray(ids)[position < 0]
    if len(missing):
        raise InputError(
            f"{what}: {len(missing)} waveform_id(s) not found, e.g. {missing[:5].tolist()}"
        )
    return position.astype(np.int64)


def align_by_id(values: ArrayLike, ids: ArrayLike, to_ids: ArrayLike, what: str) -> NDArray[Any]:
    """``values`` (one per ``ids``) in the order of ``to_ids``.

    Raises:
        InputError: a waveform of ``to_ids`` has no value, or ``ids`` repeat; the
            message starts with ``what``.

    >>> align_by_id([10.0, 20.0, 30.0], [7, 8, 9], [9, 7], "predictions").tolist()
    [30.0, 10.0]
    """
    return np.asarray(values)[_positions(to_ids, ids, what)]


def assemble_split(
    waveforms: pd.DataFrame,
    scores: pd.DataFrame,
    adc: Ragged,
    adc_waveform_id: ArrayLike,
    adc_sampling_rate_ghz: ArrayLike,
    model_sampling_rate_ghz: float,
) -> SplitInputs:
    """Align a split's prepared waveforms, peak-finder scores and raw samples.

    Args:
        waveforms: the prepared per-waveform table (``waveform_id``,
            ``n_clusters``, ``particle``, ``momentum_gev``, ``noise_fraction``,
            and the list columns ``expected_time_ns``, ``expected_drift_time_ns``).
        scores: one row per candidate: ``waveform_id``, ``sample``,
            ``probability``, ``detected``, ``label``.
        adc: raw samples per waveform, rows as ``adc_waveform_id``.
        adc_waveform_id: ``(n_raw,)`` the waveform of each row of ``adc``.
        adc_sampling_rate_ghz: ``(n_raw,)`` the digitiser rate of each row.
        model_sampling_rate_ghz: the rate the waveforms are normalised to.

    Returns:
        The split in the row order of ``waveforms``.

    Raises:
        InputError: a waveform or a candidate's waveform is missing from another input.
    """
    ids = waveforms["waveform_id"].to_numpy().astype(np.int64)
    raw_rows = _positions(ids, adc_waveform_id, "simulated waveforms")
    rates = np.asarray(adc_sampling_rate_ghz, dtype=np.float64)[raw_rows]
    norm = normalise(adc.take(raw_rows), rates, model_sampling_rate_ghz)

    candidate_row = _positions(scores["waveform_id"].to_numpy(), ids, "peak-finder scores")
    sample = scores["sample"].to_numpy().astype(np.int64)
    order = np.lexsort((sample, candidate_row))
    lengths = np.bincount(candidate_row, minlength=len(ids)).astype(np.int64)
    expected_time = Ragged.from_rows(waveforms["expected_time_ns"], np.float64)
    drift_time = Ragged.from_rows(waveforms["expected_drift_time_ns"], np.float64)
    return SplitInputs(
        waveform_id=ids,
        samples=norm.samples,
        lengths=norm.lengths,
        sampling_rate_ghz=model_sampling_rate_ghz,
        n_clusters=waveforms["n_clusters"].to_numpy().astype(np.int64),
        particle=waveforms["particle"].to_numpy().astype(str),
        momentum_gev=waveforms["momentum_gev"].to_numpy().astype(np.float64),
        noise_fraction=waveforms["noise_fraction"].to_numpy().astype(np.float64),
        expected_time_ns=expected_time,
        expected_drift_time_ns=drift_time.values,
        candidate_sample=Ragged.from_lengths(sample[order], lengths),
        candidate_label=scores["label"].to_numpy().astype(np.int8)[order],
        candidate_probability=scores["probability"].to_numpy().astype(np.float64)[order],
        candidate_detected=scores["detected"].to_numpy().astype(bool)[order],
    )


@dataclass(frozen=True, eq=False)
class CandidateEvaluation:
    """The peak finder's decisions on the candidates at the working point.

    Attributes:
        threshold: the score threshold of the working point.
        scores: ``precision``, ``recall``, ``f1``, ``accuracy``,
            ``balanced_accuracy``, ``auc``, ``efficiency_x_purity``
            (precision x recall), ``n_candidates``, ``n_signal``, ``n_detected``.
        fpr, tpr: ``(n_points,)`` the ROC curve (:func:`dndx.scoring.metrics.roc_curve`).
        working_point: ``(fpr, tpr)`` at ``threshold``.
    """

    threshold: float
    scores: dict[str, float]
    fpr: NDArray[np.float64]
    tpr: NDArray[np.float64]
    working_point: tuple[float, float]


def evaluate_candidates(
    labels: ArrayLike, probability: ArrayLike, detected: ArrayLike, threshold: float
) -> CandidateEvaluation:
    """Candidate-level scores of the peak finder's decisions against ``labels``.

    The decisions are taken as given (``detected``), so that the candidate and
    the peak scores describe the same peaks; ``threshold`` is only recorded.

    Args:
        labels: ``(n,)`` 1 for signal candidates.
        probability: ``(n,)`` the peak finder's output, for the ROC curve.
        detected: ``(n,)`` the decisions, ``probability >= threshold``.
        threshold: the working point.

    >>> c = evaluate_candidates([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1], [1, 0, 1, 0], 0.5)
    >>> c.scores["precision"], c.scores["recall"], c.scores["efficiency_x_purity"], c.scores["auc"]
    (0.5, 0.5, 0.25, 0.75)
    >>> c.working_point
    (0.5, 0.5)
    """
    positive = np.asarray(labels).astype(bool)
    called = np.asarray(detected).astype(bool)
    values = np.asarray(probability, dtype=np.float64)
    scores = binary_scores(positive, called.astype(np.float64), 0.5)
    scores["auc"] = roc_auc(positive, values)
    scores["efficiency_x_purity"] = scores["precision"] * scores["recall"]
    scores["n_candidates"] = len(positive)
    scores["n_signal"] = int(positive.sum())
    scores["n_detected"] = int(called.sum())
    fpr, tpr, _ = roc_curve(positive, values)
    n_negative = int((~positive).sum())
    working_point = (
        float(np.count_nonzero(called & ~positive) / n_negative) if n_negative else math.nan,
        scores["recall"],
    )
    return CandidateEvaluation(float(threshold), scores, fpr, tpr, working_point)


@dataclass(frozen=True, eq=False)
class PeakEvaluation:
    """One peak finder's peaks against the expected peaks.

    Attributes:
        scores: :func:`dndx.scoring.metrics.peak_scores` over all waveforms.
        by_drift_time: :func:`dndx.scoring.metrics.peak_table_by_drift_time`.
        by_noise: :func:`dndx.scoring.metrics.peak_table_by_waveform` of ``noise_fraction``.
    """

    scores: dict[str, float]
    by_drift_time: pd.DataFrame
    by_noise: pd.DataFrame


def evaluate_peaks(
    detected_samples: Ragged,
    expected_samples: Ragged,
    expected_drift_time_ns: ArrayLike,
    noise_fraction: ArrayLike,
    *,
    sampling_rate_ghz: float,
    tolerance_samples: float,
    drift_time_edges_ns: Sequence[float],
    noise_fraction_edges: Sequence[float],
) -> PeakEvaluation:
    """Match detections one-to-one to the expected peaks and score them.

    Args:
        detected_samples: detections per waveform, in samples at ``sampling_rate_ghz``.
        expected_samples: expected peaks per waveform, same unit, sorted in each row.
        expected_drift_time_ns: ``(n_expected,)`` drift time of each expected peak.
        noise_fraction: ``(n_waveforms,)`` the noise level of each waveform.
        sampling_rate_ghz: converts samples to ns for the drift-time table.
        tolerance_samples: the matching tolerance.
        drift_time_edges_ns, noise_fraction_edges: the bins of the tables.

    >>> det = Ragged.from_lengths(np.array([10, 40, 70]), [2, 1])
    >>> exp = Ragged.from_lengths(np.array([11.0, 20.0, 70.0]), [2, 1])
    >>> p = evaluate_peaks(det, exp, [5.0, 50.0, 30.0], [0.05, 0.08], sampling_rate_ghz=1.0,
    ...                    tolerance_samples=2, drift_time_edges_ns=[0, 25, 100],
    ...                    noise_fraction_edges=[0.03, 0.06, 0.1])
    >>> p.scores["efficiency"], p.scores["purity"]
    (0.6666666666666666, 0.6666666666666666)
    >>> p.by_noise["efficiency"].tolist(), p.by_drift_time["n_true"].tolist()
    ([0.5, 1.0], [1, 2])
    """
    matching = match_peaks(detected_samples, expected_samples, tolerance_samples)
    counts = count_matches(detected_samples, expected_samples, matching)
    by_drift_time = peak_table_by_drift_time(
        Ragged(detected_samples.values / sampling_rate_ghz, detected_samples.offsets),
        Ragged(expected_samples.values / sampling_rate_ghz, expected_samples.offsets),
        expected_drift_time_ns,
        matching,
        drift_time_edges_ns,
    )
    by_noise = peak_table_by_waveform(
        noise_fraction, noise_fraction_edges, counts, "noise_fraction"
    )
    return PeakEvaluation(counts.scores(), by_drift_time, by_noise)


@dataclass(frozen=True, eq=False)
class CountingEvaluation:
    """One counter's cluster counts against the true counts.

    Attributes:
        n_rec: ``(n_waveforms,)`` reconstructed counts.
        n_true: ``(n_waveforms,)`` true numbers of primary clusters.
        scores: :func:`dndx.scoring.metrics.counting_metrics` over all waveforms.
        table: :func:`dndx.scoring.metrics.counting_table` per particle and momentum bin.
    """

    n_rec: NDArray[np.float64]
    n_true: NDArray[np.int64]
    scores: dict[str, float]
    table: pd.DataFrame


def evaluate_counting(
    n_rec: ArrayLike,
    n_true: ArrayLike,
    particle: ArrayLike,
    momentum_gev: ArrayLike,
    momentum_edges_gev: Sequence[float],
) -> CountingEvaluation:
    """Counting scores overall and per particle and momentum bin.

    >>> c = evaluate_counting([9, 21, 30], [10, 20, 30], ["pi", "pi", "K"],
    ...                       [2.0, 3.0, 4.0], [1, 10])
    >>> c.scores["relative_bias"], c.scores["linearity_slope"], c.table["n"].tolist()
    (0.0, 1.05, [1, 2])
    """
    rec = np.asarray(n_rec, dtype=np.float64)
    true = np.asarray(n_true).astype(np.int64)
    return CountingEvaluation(
        rec,
        true,
        counting_metrics(rec, true),
        counting_table(rec, true, particle, momentum_gev, momentum_edges_gev),
    )


@dataclass(frozen=True)
class TargetCheck:
    """One target, and whether it is met.

    Attributes:
        name: a key, e.g. ``candidate_precision``.
        description: what is compared, for the report.
        value: the measured figure (NaN when it could not be measured: a fail).
        comparison: ``">="`` or ``"<="``.
        limit: the target.
        param: where the limit is set, e.g. ``quality_gate.min_candidate_precision``.
        passed: ``value comparison limit``.
    """

    name: str
    description: str
    value: float
    comparison: str
    limit: float
    param: str

    @classmethod
    def against(
        cls, gate: QualityGateConfig, name: str, description: str, value: float
    ) -> TargetCheck:
        """``value`` checked against its ``quality_gate`` threshold
        (:data:`THRESHOLDS`): at least a ``min_*`` one, at most a ``max_*`` one."""
        key = THRESHOLDS[name]
        comparison = ">=" if key.startswith("min_") else "<="
        return cls(
            name, description, float(value), comparison, getattr(gate, key), f"quality_gate.{key}"
        )

    @property
    def passed(self) -> bool:
        """Whether the target is met; a NaN value never is."""
        if self.comparison == ">=":
            return bool(self.value >= self.limit)
        return bool(self.value <= self.limit)


def check_targets(
    candidate: Mapping[str, float],
    lstm_peaks: Mapping[str, float],
    d2_peaks_scores: Mapping[str, float],
    cnn_counting: Mapping[str, float],
    gate: QualityGateConfig,
) -> tuple[TargetCheck, ...]:
    """The user's thresholds as checks.

    Args:
        candidate: :attr:`CandidateEvaluation.scores` of the LSTM.
        lstm_peaks, d2_peaks_scores: :attr:`PeakEvaluation.scores` of the LSTM and D2.
        cnn_counting: :attr:`CountingEvaluation.scores` of the CNN.
        gate: the thresholds (``params.yaml`` ``quality_gate``).

    >>> from dndx.config import load_params
    >>> checks = check_targets({"precision": 0.97, "recall": 0.93, "auc": 0.995},
    ...                        {"efficiency_x_purity": 0.8}, {"efficiency_x_purity": 0.75},
    ...                        {"relative_bias": -0.01}, load_params().quality_gate)
    >>> [(c.name, c.passed) for c in checks]  # doctest: +NORMALIZE_WHITESPACE
    [('candidate_precision', True), ('candidate_recall', False), ('candidate_auc', True),
     ('peak_gain_over_d2', False), ('peak_efficiency_x_purity', True),
     ('counting_abs_relative_bias', True)]
    >>> checks[1].param
    'quality_gate.min_candidate_recall'
    """
    lstm = lstm_peaks["efficiency_x_purity"]
    figures = (
        ("candidate_precision", "LSTM candidate precision", candidate["precision"]),
        ("candidate_recall", "LSTM candidate recall", candidate["recall"]),
        ("candidate_auc", "LSTM candidate ROC AUC", candidate["auc"]),
        ("peak_gain_over_d2", "peak efficiency×purity, LSTM minus D2",
         lstm - d2_peaks_scores["efficiency_x_purity"]),
        ("peak_efficiency_x_purity", "LSTM peak efficiency×purity", lstm),
        ("counting_abs_relative_bias", "CNN |relative bias|", abs(cnn_counting["relative_bias"])),
    )  # fmt: skip
    return tuple(TargetCheck.against(gate, *figure) for figure in figures)


@dataclass(frozen=True, eq=False)
class BaselineTuning:
    """What was chosen on the validation split.

    Attributes:
        d2: the D2 thresholds.
        lstm_clusterization: the clusterization window for the LSTM's peaks.
        d2_clusterization: the clusterization window for the D2 peaks.
        truth_clusterization: the clusterization window for the expected
            peaks (the reference of perfect peak finding).
    """

    d2: D2Tuning
    lstm_clusterization: ClusterTuning
    d2_clusterization: ClusterTuning
    truth_clusterization: ClusterTuning

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> BaselineTuning:
        """The choices back from an evaluation's flat metrics (``tuning.*``, as
        :meth:`Evaluation.to_metrics` writes them); the scans are not kept there,
        so theirs are empty.

        >>> metrics = {"tuning.d2.t1_sigma": 3.0, "tuning.d2.t2": 1.25}
        >>> for name in CLUSTERIZATIONS:
        ...     metrics.update({f"tuning.{name}.window_ns": 0.5,
        ...                     f"tuning.{name}.growth_ns_per_sqrt_ns": 0.1})
        >>> tuning = BaselineTuning.from_metrics(metrics)
        >>> tuning.d2.t2, tuning.truth_clusterization.window_ns
        (1.25, 0.5)
        """

        def chosen(name: str) -> ClusterTuning:
            return ClusterTuning(
                float(metrics[f"tuning.{name}.window_ns"]),
                float(metrics[f"tuning.{name}.growth_ns_per_sqrt_ns"]),
                pd.DataFrame(),
            )

        d2 = D2Tuning(
            float(metrics["tuning.d2.t1_sigma"]), float(metrics["tuning.d2.t2"]), pd.DataFrame()
        )
        return cls(d2, *(chosen(name) for name in CLUSTERIZATIONS))


def tune_baselines(
    validation: SplitInputs, tolerance_samples: float, cfg: EvaluateConfig
) -> BaselineTuning:
    """Tune the D2 thresholds, then each clusterization window, on ``validation``."""
    d2 = tune_d2(
        validation.samples,
        validation.lengths,
        validation.expected_samples,
        tolerance_samples,
        cfg.d2_t1_grid_sigma,
        cfg.d2_t2_grid,
    )
    d2_samples = d2_peaks(validation.samples, validation.lengths, d2.t1_sigma, d2.t2)

    def tune(peak_samples: Ragged) -> ClusterTuning:
        return tune_time_clusterization(
            validation.to_time_ns(peak_samples),
            validation.n_clusters,
            cfg.window_grid_ns,
            cfg.growth_grid,
        )

    return BaselineTuning(
        d2,
        lstm_clusterization=tune(validation.detected_samples),
        d2_clusterization=tune(d2_samples),
        truth_clusterization=tune(validation.expected_samples),
    )


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The whole evaluation of the test split.

    Attributes:
        n_waveforms: test waveforms.
        candidate: the LSTM on the candidates.
        peaks: one :class:`PeakEvaluation` per name of :data:`PEAK_FINDERS`.
        counting: one :class:`CountingEvaluation` per name of :data:`COUNTERS`.
        tuning: the baselines' parameters, chosen on validation.
        targets: the thresholds to check against.
    """

    n_waveforms: int
    candidate: CandidateEvaluation
    peaks: Mapping[str, PeakEvaluation]
    counting: Mapping[str, CountingEvaluation]
    tuning: BaselineTuning
    targets: tuple[TargetCheck, ...]

    def to_metrics(self) -> dict[str, float | int | bool | None]:
        """Flat, JSON-ready figures for the DVC metrics file; NaN becomes ``None``.

        Keys: ``n_waveforms``; ``candidate.lstm.<score>``;
        ``peak.<finder>.<score>``; ``counting.<counter>.<score>``;
        ``tuning.<baseline>.<parameter>``; ``target.<name>.value``,
        ``target.<name>.limit``, ``target.<name>.passed``; ``targets.n_passed``
        and ``targets.n_total``.
        """
        metrics: dict[str, Any] = {"n_waveforms": self.n_waveforms}
        metrics["candidate.lstm.threshold"] = self.candidate.threshold
        metrics.update(_prefixed("candidate.lstm", self.candidate.scores))
        for name, peaks in self.peaks.items():
            metrics.update(_prefixed(f"peak.{name}", peaks.scores))
        for name, counting in self.counting.items():
            metrics.update(_prefixed(f"counting.{name}", counting.scores))
        d2 = self.tuning.d2
        metrics["tuning.d2.t1_sigma"] = d2.t1_sigma
        metrics["tuning.d2.t2"] = d2.t2
        metrics["tuning.d2.validation_efficiency_x_purity"] = d2.best["efficiency_x_purity"]
        for name in CLUSTERIZATIONS:
            chosen: ClusterTuning = getattr(self.tuning, name)
            metrics[f"tuning.{name}.window_ns"] = chosen.window_ns
            metrics[f"tuning.{name}.growth_ns_per_sqrt_ns"] = chosen.growth_ns_per_sqrt_ns
        for check in self.targets:
            metrics[f"target.{check.name}.value"] = check.value
            metrics[f"target.{check.name}.limit"] = check.limit
            metrics[f"target.{check.name}.passed"] = check.passed
        metrics["targets.n_passed"] = sum(check.passed for check in self.targets)
        metrics["targets.n_total"] = len(self.targets)
        return {key: _json_value(value) for key, value in metrics.items()}


def _prefixed(prefix: str, scores: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}.{key}": value for key, value in scores.items()}


def _json_value(value: Any) -> float | int | bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else None


def count_clusters(
    split: SplitInputs,
    d2_samples: Ragged,
    tuning: BaselineTuning,
    cnn_n_rec: NDArray[np.float64],
) -> dict[str, NDArray[Any]]:
    """Every counter's cluster count per waveform, by the names of :data:`COUNTERS`.

    Args:
        split: the waveforms, with the peak finder's decisions.
        d2_samples: the D2 peaks (:func:`dndx.chain.baselines.d2_peaks` with ``tuning.d2``).
        tuning: the clusterization windows, from :func:`tune_baselines`.
        cnn_n_rec: ``(n_waveforms,)`` the CNN's counts, in the split's order.
    """

    def clusterize(peak_samples: Ragged, chosen: ClusterTuning) -> NDArray[np.int64]:
        clusters = time_clusterize(
            split.to_time_ns(peak_samples), chosen.window_ns, chosen.growth_ns_per_sqrt_ns
        )
        return clusters.lengths

    return {
        "cnn": np.asarray(cnn_n_rec, dtype=np.float64),
        "lstm_clusterization": clusterize(split.detected_samples, tuning.lstm_clusterization),
        "d2_clusterization": clusterize(d2_samples, tuning.d2_clusterization),
        "truth_clusterization": clusterize(split.expected_samples, tuning.truth_clusterization),
    }


def evaluate_split(
    test: SplitInputs,
    tuning: BaselineTuning,
    cnn_waveform_id: ArrayLike,
    cnn_n_rec: ArrayLike,
    *,
    score_threshold: float,
    tolerance_samples: float,
    cfg: EvaluateConfig,
    gate: QualityGateConfig,
) -> Evaluation:
    """Score models and baselines on ``test``.

    Args:
        test: the test split.
        tuning: the baselines' parameters from :func:`tune_baselines` on validation.
        cnn_waveform_id: ``(n,)`` the waveform of each CNN prediction (any order).
        cnn_n_rec: ``(n,)`` the CNN's cluster counts.
        score_threshold: the peak finder's working point, recorded (the
            decisions are ``test.candidate_detected``).
        tolerance_samples: the matching tolerance of the labels.
        cfg: bins.
        gate: the thresholds of the checks (``quality_gate``).
    """
    candidate = evaluate_candidates(
        test.candidate_label, test.candidate_probability, test.candidate_detected, score_threshold
    )
    d2_samples = d2_peaks(test.samples, test.lengths, tuning.d2.t1_sigma, tuning.d2.t2)
    finders = {
        "lstm": test.detected_samples,
        "d2": d2_samples,
        "candidates": test.candidate_sample,
    }
    peaks = {
        name: evaluate_peaks(
            found,
            test.expected_samples,
            test.expected_drift_time_ns,
            test.noise_fraction,
            sampling_rate_ghz=test.sampling_rate_ghz,
            tolerance_samples=tolerance_samples,
            drift_time_edges_ns=cfg.drift_time_edges_ns,
            noise_fraction_edges=cfg.noise_fraction_edges,
        )
        for name, found in finders.items()
    }

    cnn = align_by_id(cnn_n_rec, cnn_waveform_id, test.waveform_id, "CNN predictions")
    n_rec = count_clusters(test, d2_samples, tuning, cnn)
    counting = {
        name: evaluate_counting(
            n_rec[name], test.n_clusters, test.particle, test.momentum_gev, cfg.momentum_edges_gev
        )
        for name in COUNTERS
    }
    checks = check_targets(
        candidate.scores,
        peaks["lstm"].scores,
        peaks["d2"].scores,
        counting["cnn"].scores,
        gate,
    )
    return Evaluation(len(test), candidate, peaks, counting, tuning, checks)
