"""Configuration: ``params.yaml`` parsed once into frozen, validated models.

``params.yaml`` holds every value, once. Each of its top-level sections maps
onto one pydantic dataclass below, with the same key names; the classes say
what each key accepts (type, range, choices) and hold no defaults, so a key
missing from the file is an error, as is an unknown one. A bad file stops
before any work with a :class:`ConfigError` that gives, one line per problem,
the file, the key path, the value and what is allowed.

Ranges drawn per waveform are written as ``[low, high]`` in YAML and parsed
into :class:`Range`. Constructing a class directly (``dataclasses.replace``
included) validates the same way and raises pydantic's ``ValidationError``.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar, get_args

import yaml
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs, ErrorDetails

from dndx.errors import ConfigError

__all__ = [
    "FIT_FIELDS",
    "METRIC_GOALS",
    "PARAMS_PATH",
    "PARTICLE_MASSES_GEV",
    "PROJECT_ROOT",
    "SAMPLING_RATES_GHZ",
    "CandidateConfig",
    "ClusterCounterModelConfig",
    "CounterInputConfig",
    "CounterTrainingConfig",
    "DaskConfig",
    "DataConfig",
    "DomainConfig",
    "EvaluateConfig",
    "HoldsCandidates",
    "MlflowConfig",
    "Params",
    "PeakFinderModelConfig",
    "PrepareConfig",
    "QualityGateConfig",
    "Range",
    "RegisterConfig",
    "ScanConfig",
    "SimulationConfig",
    "TargetConfig",
    "TargetFitConfig",
    "TracksConfig",
    "TrainingConfig",
    "load_params",
    "load_section",
    "parse_params",
    "validate_mapping",
    "with_candidates",
]

#: The repository: the directory holding ``dvc.yaml`` and this package.
PROJECT_ROOT: Path = Path(__file__).resolve().parents[1]
#: The parameter file every stage reads unless given another.
PARAMS_PATH: Path = PROJECT_ROOT / "params.yaml"

#: Particle masses in GeV/c^2 (PDG).
PARTICLE_MASSES_GEV: dict[str, float] = {
    "e": 0.000510999,
    "mu": 0.105658,
    "pi": 0.139570,
    "K": 0.493677,
    "p": 0.938272,
}

#: Sampling rates of the digitisers in use (docs/physics.md).
SAMPLING_RATES_GHZ: tuple[float, ...] = (1.2, 1.5, 2.0)

#: Selection metrics of the scans and whether larger is better.
METRIC_GOALS: dict[str, str] = {
    "val_efficiency_x_purity": "max",
    "val_f1": "max",
    "val_auc": "max",
    "val_precision": "max",
    "val_recall": "max",
    "val_loss": "min",
    "val_rms_over_sqrt_n": "min",
    "val_abs_relative_bias": "min",
    "val_abs_slope_error": "min",
    "val_mae": "min",
    "val_separation_ratio": "max",
}

_MODEL = ConfigDict(extra="forbid", allow_inf_nan=False)
T = TypeVar("T")


def _one_of(choices: Sequence[object]) -> AfterValidator:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"should be one of {list(choices)}")
        return value

    return AfterValidator(check)


def _matching(pattern: str, example: str) -> AfterValidator:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"should be {example}")
        return value

    return AfterValidator(check)


def _non_empty(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if not values:
        raise ValueError("should be a non-empty list")
    return values


NonEmpty = AfterValidator(_non_empty)


def _distinct(values: tuple[Any, ...]) -> tuple[Any, ...]:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"should list each value once; repeated: {repeated}")
    return values


Distinct = AfterValidator(_distinct)


def _increasing(edges: tuple[float, ...]) -> tuple[float, ...]:
    if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError("should be at least two strictly increasing bin edges")
    return edges


Seed = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
SamplingRate = Annotated[StrictFloat, _one_of(SAMPLING_RATES_GHZ)]
Particle = Annotated[StrictStr, _one_of(tuple(PARTICLE_MASSES_GEV))]
Polarity = Annotated[StrictInt, _one_of((1, -1))]
Metric = Annotated[StrictStr, _one_of(tuple(METRIC_GOALS))]
Activation = Literal["relu", "selu", "elu", "tanh", "sigmoid", "gelu"]
Optimizer = Literal["adam", "sgd", "rmsprop"]
Units = Annotated[tuple[Annotated[StrictInt, Field(ge=1, le=4096)], ...], NonEmpty]
Size = Annotated[
    StrictStr, _matching(r"\d+(\.\d+)?\s*([kMGTP]i?B|[kKMGTP]|B)?", "a size such as 8GiB or 500MB")
]
BinEdges = Annotated[tuple[Annotated[StrictFloat, Field(ge=0.0)], ...], AfterValidator(_increasing)]
Grid = Annotated[tuple[Annotated[StrictFloat, Field(ge=0.0)], ...], NonEmpty]
Share = Annotated[StrictFloat, Field(ge=0.0, le=1.0)]


@dataclass(frozen=True, config=_MODEL)
class Range:
    """A closed interval ``[low, high]`` from which a quantity is drawn uniformly.

    >>> TypeAdapter(Range).validate_python([1, 2.5])
    Range(low=1.0, high=2.5)
    """

    low: StrictFloat
    high: StrictFloat

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, ArgsKwargs):
            return value
        if isinstance(value, list | tuple) and len(value) == 2:
            return {"low": value[0], "high": value[1]}
        raise ValueError("should be [low, high]")

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError("should be [low, high] with low <= high")
        return self

    def __str__(self) -> str:
        return f"[{self.low}, {self.high}]"

    @property
    def is_point(self) -> bool:
        """True when the range holds a single value."""
        return self.low == self.high


def _within(low: float, high: float) -> AfterValidator:
    def check(value: Range) -> Range:
        if not low <= value.low <= value.high <= high:
            raise ValueError(f"should be [low, high] within [{low}, {high}]")
        return value

    return AfterValidator(check)


@dataclass(frozen=True, config=_MODEL)
class SimulationConfig:
    """The ``simulate`` section: the waveform simulator and the data set sizes.

    Every per-waveform quantity is drawn uniformly from its range (momentum
    log-uniformly). ``block_size`` waveforms share one random stream, so it is
    part of the data's definition; ``chunk_size`` waveforms go to one parallel
    task and file, a whole number of blocks so that chunking never changes the
    data.
    """

    seed: Seed
    n_train: Annotated[StrictInt, Field(ge=1, le=10**8)]
    n_validation: Annotated[StrictInt, Field(ge=1, le=10**8)]
    n_test: Annotated[StrictInt, Field(ge=1, le=10**8)]
    block_size: Annotated[StrictInt, Field(ge=1, le=10**6)]
    chunk_size: Annotated[StrictInt, Field(ge=1, le=10**7)]
    particles: Annotated[tuple[Particle, ...], NonEmpty]
    momentum_gev: Annotated[Range, _within(0.01, 1e4)]
    cell_half_width_cm: Annotated[Range, _within(0.05, 5.0)]
    #: Largest impact parameter over the cell half-width.
    impact_fraction_max: Annotated[StrictFloat, Field(ge=0.0, le=0.99)]
    track_angle_deg: Annotated[Range, _within(0.0, 80.0)]
    drift_time_at_5mm_ns: Annotated[Range, _within(1.0, 2000.0)]
    #: Share of t(5 mm) from the r^2 term of the drift-time relation.
    drift_quadratic_fraction: Annotated[Range, _within(0.0, 1.0)]
    diffusion_sigma_at_5mm_ns: Annotated[Range, _within(0.0, 50.0)]
    trigger_offset_ns: Annotated[Range, _within(25.0, 1000.0)]
    polya_shape: Annotated[StrictFloat, Field(ge=0.1, le=100.0)]
    rise_time_ns: Annotated[Range, _within(0.05, 20.0)]
    fall_time_ns: Annotated[Range, _within(0.1, 100.0)]
    #: Ion-tail height over pulse height.
    ion_tail_fraction: Annotated[Range, _within(0.0, 0.5)]
    ion_tail_time_ns: Annotated[Range, _within(1.0, 2000.0)]
    #: Time constant of the shaping stage, an RC integrator of unit area; 0: no stage.
    shaping_time_ns: Annotated[Range, _within(0.0, 100.0)]
    #: Noise sigma over the mean single-electron amplitude.
    noise_fraction: Annotated[Range, _within(0.0, 1.0)]
    #: Correlation time of the noise, an AR(1) process (a first-order low-pass of
    #: cutoff 1 / (2 pi time)); 0: white noise.
    noise_correlation_time_ns: Annotated[Range, _within(0.0, 100.0)]
    #: Baseline wander amplitude over the single-electron amplitude.
    baseline_wander_fraction: Annotated[Range, _within(0.0, 1.0)]
    sampling_rates_ghz: Annotated[tuple[SamplingRate, ...], NonEmpty]
    window_ns: Annotated[StrictFloat, Field(ge=100.0, le=10000.0)]
    adc_bits: Annotated[StrictInt, Field(ge=8, le=16)]
    single_electron_amplitude_adc: Annotated[Range, _within(1.0, 10000.0)]
    #: Baseline distance from the signal-free rail.
    pedestal_adc: Annotated[Range, _within(0.0, 65535.0)]
    polarities: Annotated[tuple[Polarity, ...], NonEmpty]

    @model_validator(mode="after")
    def _consistent(self) -> SimulationConfig:
        if self.rise_time_ns.high >= self.fall_time_ns.low:
            raise ValueError(
                f"rise_time_ns = {self.rise_time_ns} should stay below fall_time_ns = "
                f"{self.fall_time_ns}: a pulse rises faster than it falls"
            )
        if self.chunk_size % self.block_size:
            raise ValueError(
                f"chunk_size = {self.chunk_size} should be a multiple of block_size = "
                f"{self.block_size}: chunks are made of whole random streams, so that "
                "chunking never changes the data"
            )
        return self

    def n_waveforms(self, split: str) -> int:
        """Number of waveforms in ``split`` (``train``, ``validation`` or ``test``)."""
        return {"train": self.n_train, "validation": self.n_validation, "test": self.n_test}[split]


@dataclass(frozen=True, config=_MODEL)
class CandidateConfig:
    """The candidate step, normalise -> find -> pre-select, as training and serving
    both run it (:func:`dndx.chain.candidates.candidate_step`): held by the
    ``prepare`` section and by every model bundle (:class:`dndx.chain.bundle.ModelBundle`).
    """

    #: Every waveform is resampled to this rate, at training as at inference.
    model_sampling_rate_ghz: SamplingRate
    candidate_threshold_sigma: Annotated[StrictFloat, Field(ge=0.0, le=20.0)]
    #: The candidates' pre-selection (:func:`dndx.chain.candidates.find_candidates`); 0 keeps all.
    min_curvature_sigma: Annotated[StrictFloat, Field(ge=0.0, le=20.0)]
    #: The candidates' pre-selection on their window's spread
    #: (:func:`dndx.chain.preselection.select_candidates`); 0 keeps all.
    min_window_std_sigma: Annotated[StrictFloat, Field(ge=0.0, le=20.0)]
    window_before: Annotated[StrictInt, Field(ge=0, le=50)]
    window_after: Annotated[StrictInt, Field(ge=0, le=50)]

    @property
    def window_length(self) -> int:
        """Samples per candidate window."""
        return self.window_before + 1 + self.window_after


class HoldsCandidates(Protocol):
    """What holds the candidate step's settings: the ``prepare`` section or a model bundle."""

    @property
    def candidates(self) -> CandidateConfig: ...


H = TypeVar("H", bound=HoldsCandidates)


def with_candidates(holder: H, **changes: Any) -> H:
    """``holder`` with its candidate settings changed, validated as given.

    >>> prepare = with_candidates(load_params().prepare, min_window_std_sigma=0.0)
    >>> prepare.candidates.min_window_std_sigma, prepare.candidates.window_length
    (0.0, 15)
    """
    candidates = dataclasses.replace(holder.candidates, **changes)
    changed: H = dataclasses.replace(holder, candidates=candidates)  # type: ignore[type-var]
    return changed


@dataclass(frozen=True, config=_MODEL)
class PrepareConfig:
    """The ``prepare`` section: the candidate step and the truth labels."""

    candidates: CandidateConfig
    match_tolerance_samples: Annotated[StrictInt, Field(ge=0, le=20)]
    #: Electrons closer than this form one peak.
    resolving_time_ns: Annotated[StrictFloat, Field(ge=0.0, le=50.0)]


@dataclass(frozen=True, config=_MODEL)
class PeakFinderModelConfig:
    """Topology and optimiser of the LSTM peak finder.

    ``lstm_units=(96,)`` with ``dense_units=(128,)`` is the source studies'
    topology [96, 128, 1]; the final sigmoid unit is always added.
    """

    lstm_units: Units
    dense_units: Units
    activation: Activation
    dropout: Annotated[StrictFloat, Field(ge=0.0, le=0.9)]
    optimizer: Optimizer
    learning_rate: Annotated[StrictFloat, Field(ge=1e-6, le=1.0)]


@dataclass(frozen=True, config=_MODEL)
class ClusterCounterModelConfig:
    """Topology and optimiser of the 1-D CNN cluster counter."""

    filters: Units
    kernel_size: Annotated[StrictInt, Field(ge=1, le=101)]
    pool_size: Annotated[StrictInt, Field(ge=1, le=16)]
    dense_units: Units
    activation: Activation
    dropout: Annotated[StrictFloat, Field(ge=0.0, le=0.9)]
    optimizer: Optimizer
    learning_rate: Annotated[StrictFloat, Field(ge=1e-6, le=1.0)]
    #: ``total`` regresses the count; ``per_bin`` predicts non-negative clusters per
    #: coarse time bin and sums them (``models.cluster_counter``).
    output: Literal["total", "per_bin"]


def _frozen(value: Any) -> Any:
    # Trial values are compared and hashed (grid points, Optuna's choices).
    return tuple(_frozen(v) for v in value) if isinstance(value, list | tuple) else value


@dataclass(frozen=True, config=_MODEL)
class ScanConfig:
    """A hyperparameter search: which trials to run.

    ``space`` maps fields of the model's config to the values to try (checked
    against that config by :class:`Params`). ``grid`` runs every combination;
    ``random`` draws ``n_trials`` of them; ``optuna`` lets Optuna's TPE sampler
    choose ``n_trials`` one batch after another.
    """

    strategy: Literal["grid", "random", "optuna"]
    n_trials: Annotated[StrictInt, Field(ge=1, le=10000)]
    seed: Seed
    space: dict[StrictStr, Annotated[tuple[Any, ...], NonEmpty]]

    @field_validator("space", mode="after")
    @classmethod
    def _frozen_values(cls, space: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        return {name: _frozen(values) for name, values in space.items()}


@dataclass(frozen=True, config=_MODEL)
class TrainingConfig:
    """How each trial trains, and how the trial to keep is chosen.

    ``selection`` lists metrics in order of priority: later ones break ties.
    """

    seed: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
    epochs: Annotated[StrictInt, Field(ge=1, le=10000)]
    batch_size: Annotated[StrictInt, Field(ge=1, le=2**20)]
    patience: Annotated[StrictInt, Field(ge=1, le=10000)]
    early_stopping_metric: Metric
    max_train_examples: Annotated[StrictInt, Field(ge=1, le=10**9)]
    max_validation_examples: Annotated[StrictInt, Field(ge=1, le=10**9)]
    selection: Annotated[tuple[Metric, ...], NonEmpty]
    #: Keep the cheapest trial at inference whose first selection metric is within
    #: this fraction of the best trial's (:func:`dndx.training.scan.select_cheapest`); 0 keeps
    #: the best.
    cost_tolerance: Annotated[StrictFloat, Field(ge=0.0, le=1.0)]
    learning_rate_schedule: Literal["constant", "cosine"]
    scan: ScanConfig


@dataclass(frozen=True, config=_MODEL)
class CounterTrainingConfig(TrainingConfig):
    """The counter's training (:class:`TrainingConfig`), the validation tracks it is
    judged on, and what it does against the shrinkage of the count toward the
    training mean.

    ``val_separation_ratio`` (:func:`dndx.scoring.separation.mean_separation_ratio`) is
    S / S_Poisson of ``separation_pair`` on the validation tracks, averaged over
    ``separation_momenta_gev``; the ``encode`` stage encodes those tracks alone.
    """

    separation_pair: Annotated[tuple[Particle, Particle], Distinct]
    separation_momenta_gev: Annotated[
        tuple[Annotated[StrictFloat, Field(ge=0.01, le=1e4)], ...], NonEmpty, Distinct
    ]
    #: Examples weighted by the inverse frequency of their true count
    #: (``dndx.training.counter_training.flat_count_weights``).
    target_weighting: Literal["none", "flat"]
    #: Fold a linear map fitted on validation into the model, so that the count's
    #: linearity slope is 1 and its bias 0 (``dndx.training.counter_training``).
    calibrate: StrictBool


@dataclass(frozen=True, config=_MODEL)
class CounterInputConfig:
    """The cluster counter's input encoding (see ``dndx.chain.encoding``)."""

    n_bins: Annotated[StrictInt, Field(ge=8, le=65536)]


@dataclass(frozen=True, config=_MODEL)
class TracksConfig:
    """The ``tracks`` section: track sets for particle identification (``dndx.simulation.tracks``).

    A track is one particle at one momentum crossing ``n_cells`` cells; every
    cell is a waveform drawn like those of ``simulate`` (cell size, impact
    parameter, angle, front end and digitiser of its own). Each split holds
    ``n_validation`` or ``n_test`` tracks of every particle at every momentum.
    A track is one random stream, so ``tracks_per_chunk`` (tracks per parallel
    task and file) never changes the data.
    """

    seed: Seed
    particles: Annotated[tuple[Particle, ...], NonEmpty, Distinct]
    momenta_gev: Annotated[
        tuple[Annotated[StrictFloat, Field(ge=0.01, le=1e4)], ...], NonEmpty, Distinct
    ]
    #: Cells crossed by every track: about 100 for the 1.2 m of a drift chamber.
    n_cells: Annotated[StrictInt, Field(ge=1, le=10000)]
    #: Tracks of every particle at every momentum, per split: two at least, for a spread.
    n_validation: Annotated[StrictInt, Field(ge=2, le=10**6)]
    n_test: Annotated[StrictInt, Field(ge=2, le=10**6)]
    tracks_per_chunk: Annotated[StrictInt, Field(ge=1, le=10**6)]

    def n_tracks(self, split: str) -> int:
        """Tracks of every particle at every momentum in ``split`` (``validation`` or ``test``)."""
        return {"validation": self.n_validation, "test": self.n_test}[split]


@dataclass(frozen=True, config=_MODEL)
class EvaluateConfig:
    """The ``evaluate`` section: bins of the tables and the baselines' tuning grids.

    Bin edges are strictly increasing; items outside the outermost edges are in no bin.
    """

    #: Drift-time bins of the peak tables.
    drift_time_edges_ns: BinEdges
    #: Noise-level bins (noise sigma over the single-electron amplitude).
    noise_fraction_edges: BinEdges
    #: Momentum bins of the counting table.
    momentum_edges_gev: BinEdges
    #: D2 amplitude thresholds T1 scanned, in noise sigma.
    d2_t1_grid_sigma: Grid
    #: D2-sum thresholds T2 scanned, in noise sigma per sample squared.
    d2_t2_grid: Grid
    #: Constant part of the clusterization window scanned.
    window_grid_ns: Grid
    #: Window growth with sqrt(drift time) scanned, in ns per sqrt(ns).
    growth_grid: Grid
    #: Share of a track's cells (those of least charge per cm) the dE/dx truncated mean keeps.
    dedx_keep_fraction: Annotated[StrictFloat, Field(gt=0.0, le=1.0)]


@dataclass(frozen=True, config=_MODEL)
class RegisterConfig:
    """The ``register`` section: ONNX export, the parity gate and the demo inference."""

    opset: Annotated[StrictInt, Field(ge=13, le=18)]
    parity_atol: Annotated[StrictFloat, Field(ge=0.0, le=1.0)]
    parity_windows: Annotated[StrictInt, Field(ge=1, le=10**7)]
    parity_waveforms: Annotated[StrictInt, Field(ge=1, le=10**6)]
    #: The int8 pair is kept beside the float pair only if no test figure of
    #: :data:`dndx.scoring.parity.OUTCOME_FIGURES` moves by more than this.
    quantized_tolerance: Annotated[StrictFloat, Field(ge=0.0, le=1.0)]
    #: Waveforms in the demo file.
    demo_waveforms: Annotated[StrictInt, Field(ge=1, le=10**7)]
    demo_sampling_rate_ghz: SamplingRate
    demo_polarity: Polarity


@dataclass(frozen=True, config=_MODEL)
class QualityGateConfig:
    """The ``quality_gate`` section: the user's acceptance thresholds. The evaluate
    stage checks the test figures against them and reports each as met or not;
    with ``require``, ``register`` promotes no pair that misses one."""

    #: Whether ``register`` promotes only a pair that meets every threshold.
    require: StrictBool
    min_candidate_precision: Share
    min_candidate_recall: Share
    min_candidate_auc: Share
    #: Peak efficiency x purity of the LSTM minus that of D2.
    min_peak_gain_over_d2: Annotated[StrictFloat, Field(ge=-1.0, le=1.0)]
    min_peak_efficiency_x_purity: Share
    max_abs_relative_bias: Annotated[StrictFloat, Field(ge=0.0)]
    #: The track-level thresholds hold for ``train_cluster_counter.separation_pair``
    #: at this momentum.
    separation_momentum_gev: Annotated[StrictFloat, Field(gt=0.0)]
    min_separation_ratio_to_poisson: Annotated[StrictFloat, Field(ge=0.0)]
    min_separation_gain_over_d2: Annotated[StrictFloat, Field(ge=0.0)]


@dataclass(frozen=True, config=_MODEL)
class DomainConfig:
    """The ``domain`` section: how a domain profile is measured
    (:func:`dndx.domain.profile.profile_waveforms`) and how far an input's profile may lie
    from the training domain's before ``dndx infer`` calls it outside
    (:func:`dndx.domain.profile.judge`). Stored in the model bundle beside the training
    profile, so that inputs are profiled and judged as the training data was.
    """

    #: Waveforms profiled, spread over the files.
    max_waveforms: Annotated[StrictInt, Field(ge=10, le=10**6)]
    #: A pulse whose shape is averaged peaks above this (noise units).
    pulse_threshold_sigma: Annotated[StrictFloat, Field(gt=0.0, le=100.0)]
    #: An averaged pulse rises from near the baseline over this long before its top,
    #: and falls without a new pulse (a rise beyond quiet_threshold_sigma) this long after.
    isolation_before_ns: Annotated[StrictFloat, Field(ge=0.0, le=1000.0)]
    isolation_after_ns: Annotated[StrictFloat, Field(ge=0.0, le=1000.0)]
    #: The mean pulse is drawn from this long before to this long after its leading
    #: edge's half-height crossing.
    shape_before_ns: Annotated[StrictFloat, Field(gt=0.0, le=1000.0)]
    shape_after_ns: Annotated[StrictFloat, Field(gt=0.0, le=1000.0)]
    #: Fewest isolated pulses for a shape.
    min_pulses: Annotated[StrictInt, Field(ge=1, le=10**6)]
    #: Samples farther than the isolation times from any excursion beyond this
    #: (noise units, either side) are signal-free: the noise is measured on them.
    quiet_threshold_sigma: Annotated[StrictFloat, Field(gt=0.0, le=100.0)]
    #: The noise autocorrelation is measured at these lags.
    noise_lags_ns: Annotated[tuple[Annotated[StrictFloat, Field(gt=0.0)], ...], NonEmpty]
    #: The lag by which the noise has decorrelated, and slow wander has not yet moved.
    noise_reference_lag_ns: Annotated[StrictFloat, Field(gt=0.0, le=1000.0)]
    #: Outside when a shape time (rise, fall) differs by more than this factor either way.
    max_time_ratio: Annotated[StrictFloat, Field(gt=1.0)]
    #: Outside when the noise autocorrelation at a lag differs by more than this.
    max_autocorrelation_difference: Annotated[StrictFloat, Field(gt=0.0, le=2.0)]
    #: Outside when the median pulse height (noise units) differs by more than this factor.
    max_amplitude_ratio: Annotated[StrictFloat, Field(gt=1.0)]

    @model_validator(mode="after")
    def _reference_beyond_lags(self) -> DomainConfig:
        if max(self.noise_lags_ns) >= self.noise_reference_lag_ns:
            raise ValueError(
                f"noise_lags_ns = {list(self.noise_lags_ns)} should stay below "
                f"noise_reference_lag_ns = {self.noise_reference_lag_ns}"
            )
        return self


#: The ``simulate`` ranges a target fit may choose (:mod:`dndx.domain.fit`): the
#: front end and its noise, which a beam test's digitiser sets and its waveforms show.
FIT_FIELDS: tuple[str, ...] = (
    "rise_time_ns",
    "fall_time_ns",
    "shaping_time_ns",
    "noise_fraction",
    "noise_correlation_time_ns",
    "single_electron_amplitude_adc",
    "baseline_wander_fraction",
)


def _fit_fields(candidates: dict[str, tuple[Range, ...]]) -> dict[str, tuple[Range, ...]]:
    unknown = sorted(set(candidates) - set(FIT_FIELDS))
    if unknown:
        raise ValueError(f"{unknown}: not fitted; the fit chooses among {list(FIT_FIELDS)}")
    return candidates


@dataclass(frozen=True, config=_MODEL)
class TargetFitConfig:
    """How the simulator's front end is fitted to a target's profile
    (:func:`dndx.domain.fit.fit_front_end`).

    ``candidates`` maps ``simulate`` ranges (of :data:`FIT_FIELDS`) to the
    ranges the fit may choose for them; ``rounds`` passes over them, each
    field in turn set to its best candidate with the others held; every
    candidate setting is ``n_waveforms`` waveforms simulated from the same
    ``seed``, so two settings differ by their front end alone.
    """

    seed: Seed
    n_waveforms: Annotated[StrictInt, Field(ge=10, le=10**6)]
    rounds: Annotated[StrictInt, Field(ge=1, le=20)]
    #: Random points of the candidates' grid simulated first; the search starts at the best.
    random_starts: Annotated[StrictInt, Field(ge=0, le=10000)]
    candidates: Annotated[
        dict[StrictStr, Annotated[tuple[Range, ...], NonEmpty]], AfterValidator(_fit_fields)
    ]


@dataclass(frozen=True, config=_MODEL)
class TargetConfig:
    """The ``target`` section: unlabelled files the models should serve (a beam
    test), and how the simulation is adapted to them (README: "Beam-test data:
    check and adapt").

    ``files`` are globs relative to ``root`` (a directory DVC tracks, the
    ``profile`` stage's dependency); empty: no target, and the simulation is the
    ``simulate`` section's alone. ``format`` and the location keys (``tree``,
    ``branch``, ``dataset``, ``column``, ``array``) are ``dndx infer``'s reader
    options, ``""`` where the file's suffix or content decides.
    ``sampling_rate_ghz`` is the files' rate where they store none; a file that
    stores another stops the run.
    """

    root: Annotated[StrictStr, NonEmpty]
    files: tuple[StrictStr, ...]
    format: Literal["", "root", "hdf5", "parquet", "npz"]
    tree: StrictStr
    branch: StrictStr
    dataset: StrictStr
    column: StrictStr
    array: StrictStr
    sampling_rate_ghz: Annotated[StrictFloat, Field(gt=0.0, le=100.0)]
    fit: TargetFitConfig


@dataclass(frozen=True, config=_MODEL)
class MlflowConfig:
    """Where runs and models are tracked. ``MLFLOW_TRACKING_URI`` in the environment wins."""

    tracking_uri: Annotated[StrictStr, NonEmpty]
    experiment: Annotated[StrictStr, NonEmpty]
    artifact_location: Annotated[StrictStr, NonEmpty]


@dataclass(frozen=True, config=_MODEL)
class DaskConfig:
    """The ``dask`` section: where chunks and trials run. Not a DVC param: it
    changes how fast a stage runs, never what it writes.

    ``local`` starts ``n_workers`` processes on this machine; ``address``
    connects to a running scheduler (``DNDX_DASK_ADDRESS`` in the environment
    selects it too); ``htcondor`` and ``slurm`` submit batch jobs through
    dask-jobqueue, each job ``cores`` single-threaded worker processes, scaled
    between ``minimum_jobs`` and ``maximum_jobs`` as work waits. ``queue`` is
    the Slurm partition or the HTCondor requirements expression;
    ``job_extra_directives`` extra ``#SBATCH`` options or HTCondor
    ``key = value`` lines; ``python`` the interpreter on the nodes ("" = this one).
    """

    mode: Literal["local", "address", "htcondor", "slurm"]
    n_workers: Annotated[StrictInt, Field(ge=1, le=1024)]
    threads_per_worker: Annotated[StrictInt, Field(ge=1, le=256)]
    memory_limit: Size
    address: StrictStr
    cores: Annotated[StrictInt, Field(ge=1, le=1024)]
    memory: Size
    disk: Size
    walltime: Annotated[StrictStr, _matching(r"(\d+-)?\d{1,3}:\d{2}:\d{2}", "[D-]HH:MM:SS")]
    queue: StrictStr
    job_extra_directives: tuple[StrictStr, ...]
    python: StrictStr
    minimum_jobs: Annotated[StrictInt, Field(ge=0, le=10000)]
    maximum_jobs: Annotated[StrictInt, Field(ge=1, le=10000)]

    @model_validator(mode="after")
    def _consistent(self) -> DaskConfig:
        if self.mode == "address" and not self.address:
            raise ValueError(
                "mode address needs the scheduler's address, e.g. tcp://host:8786 "
                "(or set DNDX_DASK_ADDRESS)"
            )
        if self.minimum_jobs > self.maximum_jobs:
            raise ValueError(
                f"minimum_jobs = {self.minimum_jobs} exceeds maximum_jobs = {self.maximum_jobs}"
            )
        if self.mode == "htcondor":
            for line in self.job_extra_directives:
                if "=" not in line:
                    raise ValueError(
                        f"job_extra_directives: {line!r}: HTCondor directives are "
                        "'key = value' lines"
                    )
        return self

    @property
    def walltime_seconds(self) -> int:
        """``walltime`` in seconds.

        >>> dataclasses.replace(load_params().dask, walltime="1-02:00:30").walltime_seconds
        93630
        """
        days, _, clock = self.walltime.rpartition("-")
        hours, minutes, seconds = (int(part) for part in clock.split(":"))
        return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


@dataclass(frozen=True, config=_MODEL)
class DataConfig:
    """The ``data`` section: where the waveforms come from.

    ``source: simulate`` is the simulator of the ``simulate`` section. With
    ``files``, labelled files under ``root`` (a directory DVC tracks, the
    ``ingest`` stage's dependency) are read in ``layout`` (see
    :mod:`dndx.io.labelled`): either ``splits`` names globs per split, relative to
    ``root``, or ``files`` names one set of globs, split *by file* with
    ``fractions`` (train, validation, test) and ``seed``. ``names``,
    ``time_unit``, ``sampling_rate_unit`` and ``particle`` are the layout's
    settings; ``particles`` maps globs (relative to ``root``) to the particle
    of the files they match, for files of one particle each such as the CEPC
    pion and kaon test files (the first matching glob wins over ``particle``);
    ``chunk_size`` waveforms go to one parallel task and part file.
    """

    source: Literal["simulate", "files"]
    root: Annotated[StrictStr, NonEmpty]
    splits: dict[Literal["train", "validation", "test"], tuple[StrictStr, ...]]
    files: tuple[StrictStr, ...]
    fractions: tuple[Annotated[StrictFloat, Field(gt=0.0, lt=1.0)], ...]
    seed: Seed
    layout: Literal["cepc", "dndx"]
    names: dict[StrictStr, StrictStr]
    time_unit: Literal["samples", "ns"]
    sampling_rate_unit: Literal["ghz", "ns_per_sample"]
    particle: Annotated[StrictStr, _one_of(("", *PARTICLE_MASSES_GEV))]
    particles: dict[StrictStr, Particle]
    chunk_size: Annotated[StrictInt, Field(ge=1, le=10_000_000)]

    @model_validator(mode="after")
    def _one_way_to_split(self) -> DataConfig:
        if self.source == "files":
            named = {split: globs for split, globs in self.splits.items() if globs}
            if named and self.files:
                raise ValueError("give either splits (globs per split) or files, not both")
            if named and set(named) != {"train", "validation", "test"}:
                raise ValueError("splits should name globs for train, validation and test")
            if not named and not self.files:
                raise ValueError("source files needs splits (globs per split) or files")
            if self.files and (len(self.fractions) != 3 or abs(sum(self.fractions) - 1) > 1e-9):
                raise ValueError(
                    "fractions should be three numbers (train, validation, test) summing to 1"
                )
        return self


@dataclass(frozen=True, config=_MODEL)
class Params:
    """All of ``params.yaml``.

    Each scan's ``space`` must name fields of the model it scans, with values
    that model accepts; they are stored as that model would hold them.
    """

    simulate: SimulationConfig
    prepare: PrepareConfig
    tracks: TracksConfig
    peak_finder: PeakFinderModelConfig
    train_peak_finder: TrainingConfig
    counter_input: CounterInputConfig
    cluster_counter: ClusterCounterModelConfig
    train_cluster_counter: CounterTrainingConfig
    evaluate: EvaluateConfig
    quality_gate: QualityGateConfig
    register: RegisterConfig
    mlflow: MlflowConfig
    dask: DaskConfig
    data: DataConfig
    domain: DomainConfig
    target: TargetConfig

    @field_validator("train_peak_finder", "train_cluster_counter", mode="after")
    @classmethod
    def _space_fits_the_model(
        cls, training: TrainingConfig, info: ValidationInfo
    ) -> TrainingConfig:
        model_section = {
            "train_peak_finder": "peak_finder",
            "train_cluster_counter": "cluster_counter",
        }[str(info.field_name)]
        model = info.data.get(model_section)
        if model is None:  # the model's own section failed; its errors say why
            return training
        fields = [f.name for f in dataclasses.fields(model)]
        space = {}
        for name, values in training.scan.space.items():
            if name not in fields:
                raise ValueError(
                    f"scan.space.{name}: not a key of {model_section}; keys are {fields}"
                )
            checked = []
            for index, value in enumerate(values):
                try:
                    checked.append(getattr(dataclasses.replace(model, **{name: value}), name))
                except ValidationError as error:
                    detail = error.errors(include_url=False)[0]
                    where = _key_path(("scan", "space", name, index, *detail["loc"][1:]))
                    raise ValueError(f"{where}{_problem(detail, type(model))}") from None
            space[name] = tuple(checked)
        return dataclasses.replace(training, scan=dataclasses.replace(training.scan, space=space))

    @model_validator(mode="after")
    def _separation_tracks_exist(self) -> Params:
        # Imported files bring their own particles and momenta: nothing to check here.
        if self.data.source != "simulate":
            return self
        training, tracks = self.train_cluster_counter, self.tracks
        missing_particles = [p for p in training.separation_pair if p not in tracks.particles]
        if missing_particles:
            raise ValueError(
                f"train_cluster_counter.separation_pair = {list(training.separation_pair)}: "
                f"{missing_particles} not in tracks.particles {list(tracks.particles)}"
            )
        missing_momenta = [
            m for m in training.separation_momenta_gev if m not in tracks.momenta_gev
        ]
        if missing_momenta:
            raise ValueError(
                "train_cluster_counter.separation_momenta_gev = "
                f"{list(training.separation_momenta_gev)}: {missing_momenta} not in "
                f"tracks.momenta_gev {list(tracks.momenta_gev)}"
            )
        return self

    @model_validator(mode="after")
    def _fit_candidates_simulate(self) -> Params:
        for name, candidates in self.target.fit.candidates.items():
            for index, candidate in enumerate(candidates):
                try:
                    change: dict[str, Any] = {name: candidate}
                    dataclasses.replace(self.simulate, **change)
                except ValidationError as error:
                    detail = error.errors(include_url=False)[0]
                    problem = str(detail.get("ctx", {}).get("error", detail["msg"]))
                    raise ValueError(
                        f"target.fit.candidates.{name}[{index}] = {candidate}: not a simulate "
                        f"setting: {problem}"
                    ) from None
        return self


def _key_path(loc: Sequence[int | str]) -> str:
    path = ""
    for key in loc:
        path += f"[{key}]" if isinstance(key, int) else f".{key}" if path else str(key)
    return path


def _keys_at(root: type, loc: Sequence[int | str]) -> list[str]:
    """The keys of the section at ``loc`` below ``root``."""
    section: Any = root
    for key in loc:
        section = section.__pydantic_fields__[key].annotation
        # An optional section (``X | None``): the keys are X's.
        section = next((t for t in get_args(section) if t is not type(None)), section)
    return list(section.__pydantic_fields__)


def _problem(detail: ErrorDetails, root: type) -> str:
    """What is wrong with the key at ``detail["loc"]`` below ``root``: its
    value, if it is not a whole section, and what is allowed."""
    kind, value = detail["type"], detail["input"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f": unknown key; allowed keys are {_keys_at(root, detail['loc'][:-1])}"
    if kind == "missing":
        return ": missing; every key must be given"
    if kind in ("dataclass_type", "dict_type"):
        return f" = {value!r}: should be a mapping of keys"
    if kind == "value_error":
        message = str(detail.get("ctx", {}).get("error", detail["msg"]))
    else:
        message = detail["msg"].removeprefix("Input ")
    if isinstance(value, Mapping | ArgsKwargs) or dataclasses.is_dataclass(value):
        return f": {message}"
    return f" = {value!r}: {message}"


def parse_params(mapping: Any, source: str | Path = "params.yaml") -> Params:
    """Validate a parsed parameter file into :class:`Params`.

    Every key must be given; unknown keys are errors.

    >>> import yaml
    >>> mapping = yaml.safe_load(PARAMS_PATH.read_text())
    >>> parse_params(mapping).prepare.candidates.window_length
    15
    >>> mapping["prepare"]["candidates"]["window_after"] = "nine"
    >>> del mapping["prepare"]["candidates"]["window_before"]
    >>> parse_params(mapping, "my.yaml")
    Traceback (most recent call last):
    ...
    dndx.errors.ConfigError: my.yaml: 2 problems:
      prepare.candidates.window_before: missing; every key must be given
      prepare.candidates.window_after = 'nine': should be a valid integer
    """
    return validate_mapping(Params, mapping, source, ())


def _line(detail: ErrorDetails, cls: type, loc: tuple[str, ...]) -> str:
    """One problem of a file: the key path, then what is wrong with it."""
    where = _key_path((*loc, *detail["loc"]))
    if not where and detail["type"] == "value_error":
        # A check across sections names its keys itself.
        return _problem(detail, cls).removeprefix(": ")
    return f"{where or 'top level'}{_problem(detail, cls)}"


def validate_mapping(
    cls: type[T], mapping: Any, source: str | Path, loc: tuple[str, ...] = ()
) -> T:
    """``mapping`` read from ``source`` (at key path ``loc``) validated into ``cls``.

    Raises:
        ConfigError: one line per problem, naming ``source``, the key and the value.
    """
    try:
        return TypeAdapter(cls).validate_python(mapping)
    except ValidationError as error:
        lines = [_line(detail, cls, loc) for detail in error.errors(include_url=False)]
        if len(lines) == 1:
            raise ConfigError(f"{source}: {lines[0]}") from None
        raise ConfigError(
            f"{source}: {len(lines)} problems:\n" + "\n".join(f"  {line}" for line in lines)
        ) from None


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the parameter file ({error.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate a parameter file: ``path``, or the project's own
    :data:`PARAMS_PATH` (whatever the working directory).

    Raises:
        ConfigError: the file is missing, is not YAML, or holds a bad value.
    """
    path = PARAMS_PATH if path is None else Path(path)
    return parse_params(_read(path), path)


def load_section(path: str | Path, name: str, cls: type[T]) -> T:
    """Read and validate the one section ``name`` of a YAML file, such as the
    ``dask`` section of an ``infra/dask`` example.

    >>> load_section(PARAMS_PATH, "dask", DaskConfig).mode
    'local'

    Raises:
        ConfigError: the file is missing, is not YAML, lacks the section or
            holds a bad value.
    """
    path = Path(path)
    mapping = _read(path)
    if not isinstance(mapping, Mapping) or name not in mapping:
        raise ConfigError(f"{path}: no section {name!r} at the top level")
    return validate_mapping(cls, mapping[name], path, (name,))
