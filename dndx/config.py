"""Configuration: ``params.yaml`` parsed once into frozen, validated dataclasses.

Each top-level section of ``params.yaml`` maps onto one dataclass below, with
the same key names (a test checks that ``params.yaml``, ``dvc.yaml`` and these
classes agree). Every field declares what it accepts; a wrong type, an unknown
key or a value out of range stops before any work with a :class:`ConfigError`
naming the file, the key, the value and what is allowed.

Ranges drawn per waveform are written as ``[low, high]`` in YAML and parsed
into :class:`Range`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dndx.baselines import GROWTH_GRID, T1_GRID_SIGMA, T2_GRID, WINDOW_GRID_NS
from dndx.errors import ConfigError

__all__ = [
    "METRIC_GOALS",
    "PARTICLE_MASSES_GEV",
    "SAMPLING_RATES_GHZ",
    "ClusterCounterModelConfig",
    "CounterInputConfig",
    "DaskConfig",
    "EvaluateConfig",
    "MlflowConfig",
    "Params",
    "PeakFinderModelConfig",
    "PrepareConfig",
    "Range",
    "RegisterConfig",
    "ScanConfig",
    "SimulationConfig",
    "TrainingConfig",
    "load_params",
    "parse_params",
]

#: Particle masses in GeV/c^2 (PDG).
PARTICLE_MASSES_GEV: dict[str, float] = {
    "e": 0.000510999,
    "mu": 0.105658,
    "pi": 0.139570,
    "K": 0.493677,
    "p": 0.938272,
}

#: Sampling rates of the digitisers in use (physics.md).
SAMPLING_RATES_GHZ: tuple[float, ...] = (1.2, 1.5, 2.0)

_INF = math.inf


@dataclass(frozen=True)
class Range:
    """A closed interval ``[low, high]`` from which a quantity is drawn uniformly."""

    low: float
    high: float

    @property
    def is_point(self) -> bool:
        """True when the range holds a single value."""
        return self.low == self.high


def _spec(
    *,
    bounds: tuple[float, float] | None = None,
    choices: tuple[Any, ...] | None = None,
    doc: str = "",
) -> dict[str, Any]:
    return {"bounds": bounds, "choices": choices, "doc": doc}


@dataclass(frozen=True)
class SimulationConfig:
    """The ``simulate`` section: the waveform simulator and the data set sizes.

    Defaults are the ranges of ``physics.md``; every per-waveform quantity is
    drawn uniformly from its range (momentum log-uniformly).
    """

    seed: int = field(default=20261123, metadata=_spec(bounds=(0, 2**63 - 1)))
    n_train: int = field(default=20000, metadata=_spec(bounds=(1, 10**8)))
    n_validation: int = field(default=5000, metadata=_spec(bounds=(1, 10**8)))
    n_test: int = field(default=5000, metadata=_spec(bounds=(1, 10**8)))
    block_size: int = field(
        default=250,
        metadata=_spec(bounds=(1, 10**6), doc="waveforms per random stream; fixes the data"),
    )
    chunk_size: int = field(
        default=2500,
        metadata=_spec(bounds=(1, 10**7), doc="waveforms per parallel task and file"),
    )
    particles: tuple[str, ...] = field(
        default=("mu", "pi", "K"), metadata=_spec(choices=tuple(PARTICLE_MASSES_GEV))
    )
    momentum_gev: Range = field(default=Range(1.0, 50.0), metadata=_spec(bounds=(0.01, 1e4)))
    cell_half_width_cm: Range = field(default=Range(0.4, 0.75), metadata=_spec(bounds=(0.05, 5.0)))
    impact_fraction_max: float = field(default=0.9, metadata=_spec(bounds=(0.0, 0.99)))
    track_angle_deg: Range = field(default=Range(0.0, 45.0), metadata=_spec(bounds=(0.0, 80.0)))
    drift_time_at_5mm_ns: Range = field(
        default=Range(150.0, 250.0), metadata=_spec(bounds=(1.0, 2000.0))
    )
    drift_quadratic_fraction: Range = field(
        default=Range(0.2, 0.6),
        metadata=_spec(bounds=(0.0, 1.0), doc="share of t(5 mm) from the r^2 term"),
    )
    diffusion_sigma_at_5mm_ns: Range = field(
        default=Range(2.0, 5.0), metadata=_spec(bounds=(0.0, 50.0))
    )
    trigger_offset_ns: Range = field(
        default=Range(25.0, 100.0), metadata=_spec(bounds=(25.0, 1000.0))
    )
    polya_shape: float = field(default=1.5, metadata=_spec(bounds=(0.1, 100.0)))
    rise_time_ns: Range = field(default=Range(0.6, 1.1), metadata=_spec(bounds=(0.05, 20.0)))
    fall_time_ns: Range = field(default=Range(2.5, 5.0), metadata=_spec(bounds=(0.1, 100.0)))
    ion_tail_fraction: Range = field(
        default=Range(0.01, 0.05),
        metadata=_spec(bounds=(0.0, 0.5), doc="ion-tail height over pulse height"),
    )
    ion_tail_time_ns: Range = field(
        default=Range(50.0, 200.0), metadata=_spec(bounds=(1.0, 2000.0))
    )
    noise_fraction: Range = field(
        default=Range(0.03, 0.10),
        metadata=_spec(bounds=(0.0, 1.0), doc="noise sigma over mean 1-electron amplitude"),
    )
    baseline_wander_fraction: Range = field(
        default=Range(0.0, 0.05),
        metadata=_spec(bounds=(0.0, 1.0), doc="wander amplitude over 1-electron amplitude"),
    )
    sampling_rates_ghz: tuple[float, ...] = field(
        default=SAMPLING_RATES_GHZ, metadata=_spec(choices=SAMPLING_RATES_GHZ)
    )
    window_ns: float = field(default=2000.0, metadata=_spec(bounds=(100.0, 10000.0)))
    adc_bits: int = field(default=12, metadata=_spec(bounds=(8, 16)))
    single_electron_amplitude_adc: Range = field(
        default=Range(40.0, 150.0), metadata=_spec(bounds=(1.0, 10000.0))
    )
    pedestal_adc: Range = field(
        default=Range(200.0, 600.0),
        metadata=_spec(bounds=(0.0, 65535.0), doc="baseline distance from the signal-free rail"),
    )
    polarities: tuple[int, ...] = field(default=(1, -1), metadata=_spec(choices=(1, -1)))

    def n_waveforms(self, split: str) -> int:
        """Number of waveforms in ``split`` (``train``, ``validation`` or ``test``)."""
        return {"train": self.n_train, "validation": self.n_validation, "test": self.n_test}[split]


@dataclass(frozen=True)
class PrepareConfig:
    """The ``prepare`` section: candidates, windows and truth labels."""

    model_sampling_rate_ghz: float = field(default=1.5, metadata=_spec(choices=SAMPLING_RATES_GHZ))
    candidate_threshold_sigma: float = field(default=2.0, metadata=_spec(bounds=(0.0, 20.0)))
    window_before: int = field(default=5, metadata=_spec(bounds=(0, 50)))
    window_after: int = field(default=9, metadata=_spec(bounds=(0, 50)))
    match_tolerance_samples: int = field(default=2, metadata=_spec(bounds=(0, 20)))
    resolving_time_ns: float = field(
        default=1.5,
        metadata=_spec(bounds=(0.0, 50.0), doc="electrons closer than this form one peak"),
    )

    @property
    def window_length(self) -> int:
        """Samples per candidate window."""
        return self.window_before + 1 + self.window_after


_ACTIVATIONS = ("relu", "selu", "elu", "tanh", "sigmoid", "gelu")
_OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclass(frozen=True)
class PeakFinderModelConfig:
    """Topology and optimiser of the LSTM peak finder.

    ``lstm_units=(96,)`` with ``dense_units=(128,)`` is the source studies'
    topology [96, 128, 1]; the final sigmoid unit is always added.
    """

    lstm_units: tuple[int, ...] = field(default=(32,), metadata=_spec(bounds=(1, 4096)))
    dense_units: tuple[int, ...] = field(default=(64,), metadata=_spec(bounds=(1, 4096)))
    activation: str = field(default="relu", metadata=_spec(choices=_ACTIVATIONS))
    dropout: float = field(default=0.1, metadata=_spec(bounds=(0.0, 0.9)))
    optimizer: str = field(default="adam", metadata=_spec(choices=_OPTIMIZERS))
    learning_rate: float = field(default=1e-3, metadata=_spec(bounds=(1e-6, 1.0)))


@dataclass(frozen=True)
class ClusterCounterModelConfig:
    """Topology and optimiser of the 1-D CNN cluster counter."""

    filters: tuple[int, ...] = field(default=(32, 64, 64), metadata=_spec(bounds=(1, 4096)))
    kernel_size: int = field(default=5, metadata=_spec(bounds=(1, 101)))
    pool_size: int = field(default=2, metadata=_spec(bounds=(1, 16)))
    dense_units: tuple[int, ...] = field(default=(64,), metadata=_spec(bounds=(1, 4096)))
    activation: str = field(default="relu", metadata=_spec(choices=_ACTIVATIONS))
    dropout: float = field(default=0.1, metadata=_spec(bounds=(0.0, 0.9)))
    optimizer: str = field(default="adam", metadata=_spec(choices=_OPTIMIZERS))
    learning_rate: float = field(default=1e-3, metadata=_spec(bounds=(1e-6, 1.0)))


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
}


@dataclass(frozen=True)
class ScanConfig:
    """A hyperparameter search: which trials to run.

    ``space`` maps fields of the model's config to the values to try. ``grid``
    runs every combination; ``random`` draws ``n_trials`` of them; ``optuna``
    lets Optuna's TPE sampler choose ``n_trials`` one batch after another.
    """

    strategy: str = field(default="grid", metadata=_spec(choices=("grid", "random", "optuna")))
    n_trials: int = field(default=4, metadata=_spec(bounds=(1, 10000)))
    seed: int = field(default=7, metadata=_spec(bounds=(0, 2**63 - 1)))
    space: dict[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingConfig:
    """How each trial trains, and how the best trial is chosen.

    ``selection`` lists metrics in order of priority: later ones break ties.
    """

    seed: int = field(default=1, metadata=_spec(bounds=(0, 2**31 - 1)))
    epochs: int = field(default=15, metadata=_spec(bounds=(1, 10000)))
    batch_size: int = field(default=256, metadata=_spec(bounds=(1, 2**20)))
    patience: int = field(default=3, metadata=_spec(bounds=(1, 10000)))
    early_stopping_metric: str = field(
        default="val_loss", metadata=_spec(choices=tuple(METRIC_GOALS))
    )
    max_train_examples: int = field(default=200000, metadata=_spec(bounds=(1, 10**9)))
    max_validation_examples: int = field(default=100000, metadata=_spec(bounds=(1, 10**9)))
    selection: tuple[str, ...] = field(
        default=("val_efficiency_x_purity", "val_f1", "val_auc"),
        metadata=_spec(choices=tuple(METRIC_GOALS)),
    )
    learning_rate_schedule: str = field(
        default="constant",
        metadata=_spec(
            choices=("constant", "cosine"),
            doc="the model's learning_rate throughout, or decayed along half a cosine "
            "towards zero over epochs",
        ),
    )
    scan: ScanConfig = ScanConfig()


@dataclass(frozen=True)
class CounterInputConfig:
    """The cluster counter's input encoding (see ``dndx.encoding``)."""

    n_bins: int = field(default=1024, metadata=_spec(bounds=(8, 65536)))


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section: bins of the tables and the baselines' tuning grids.

    Bin edges are increasing; items outside the outermost edges are in no bin.
    """

    drift_time_edges_ns: tuple[float, ...] = field(
        default=(0.0, 25.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 500.0),
        metadata=_spec(bounds=(0.0, 1e5), doc="drift-time bins of the peak tables"),
    )
    noise_fraction_edges: tuple[float, ...] = field(
        default=(0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10),
        metadata=_spec(
            bounds=(0.0, 1.0), doc="noise-level bins (noise sigma / 1-electron amplitude)"
        ),
    )
    momentum_edges_gev: tuple[float, ...] = field(
        default=(1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
        metadata=_spec(bounds=(0.0, 1e4), doc="momentum bins of the counting table"),
    )
    d2_t1_grid_sigma: tuple[float, ...] = field(
        default=T1_GRID_SIGMA,
        metadata=_spec(bounds=(0.0, 100.0), doc="D2 amplitude thresholds scanned"),
    )
    d2_t2_grid: tuple[float, ...] = field(
        default=T2_GRID, metadata=_spec(bounds=(0.0, 1e4), doc="D2-sum thresholds scanned")
    )
    window_grid_ns: tuple[float, ...] = field(
        default=WINDOW_GRID_NS,
        metadata=_spec(bounds=(0.0, 1e3), doc="constant part of the clusterization window scanned"),
    )
    growth_grid: tuple[float, ...] = field(
        default=GROWTH_GRID,
        metadata=_spec(bounds=(0.0, 100.0), doc="window growth with sqrt(drift time) scanned"),
    )

    def __post_init__(self) -> None:
        for name in ("drift_time_edges_ns", "noise_fraction_edges", "momentum_edges_gev"):
            edges = getattr(self, name)
            if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ConfigError(
                    f"evaluate.{name} = {list(edges)}: expected at least two strictly "
                    "increasing bin edges"
                )


@dataclass(frozen=True)
class RegisterConfig:
    """The ``register`` section: ONNX export, the parity gate and the demo inference."""

    opset: int = field(default=17, metadata=_spec(bounds=(13, 18)))
    parity_atol: float = field(default=1e-4, metadata=_spec(bounds=(0.0, 1.0)))
    parity_windows: int = field(default=20000, metadata=_spec(bounds=(1, 10**7)))
    parity_waveforms: int = field(default=500, metadata=_spec(bounds=(1, 10**6)))
    demo_waveforms: int = field(
        default=2000, metadata=_spec(bounds=(1, 10**7), doc="waveforms in the demo file")
    )
    demo_sampling_rate_ghz: float = field(default=1.2, metadata=_spec(choices=SAMPLING_RATES_GHZ))
    demo_polarity: int = field(default=-1, metadata=_spec(choices=(1, -1)))


@dataclass(frozen=True)
class MlflowConfig:
    """Where runs and models are tracked. ``MLFLOW_TRACKING_URI`` in the environment wins."""

    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "dndx"
    artifact_location: str = "mlartifacts"


_BYTES = re.compile(r"^\d+(\.\d+)?\s*([kMGTP]i?B|[kKMGTP]|B)?$")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")
_BATCH_MODES = ("htcondor", "slurm")


@dataclass(frozen=True)
class DaskConfig:
    """The ``dask`` section: where chunks and trials run. Not a DVC param: it
    changes how fast a stage runs, never what it writes.

    ``local`` starts ``n_workers`` processes on this machine; ``address``
    connects to a running scheduler (``DNDX_DASK_ADDRESS`` in the environment
    selects it too); ``htcondor`` and ``slurm`` submit batch jobs through
    dask-jobqueue, each job one worker process per core with one thread each,
    scaled between ``minimum_jobs`` and ``maximum_jobs`` as work waits.

    >>> DaskConfig(mode="slurm", memory="lots")
    Traceback (most recent call last):
    ...
    dndx.errors.ConfigError: dask.memory = 'lots': expected a size such as 8GiB or 500MB
    """

    mode: str = field(default="local", metadata=_spec(choices=("local", "address", *_BATCH_MODES)))
    n_workers: int = field(
        default=2, metadata=_spec(bounds=(1, 1024), doc="local: worker processes")
    )
    threads_per_worker: int = field(default=1, metadata=_spec(bounds=(1, 256)))
    memory_limit: str = field(default="4GiB", metadata=_spec(doc="local: memory per worker"))
    address: str = field(default="", metadata=_spec(doc="address: e.g. tcp://host:8786"))
    cores: int = field(
        default=4, metadata=_spec(bounds=(1, 1024), doc="batch: cores per job, one worker each")
    )
    memory: str = field(default="16GiB", metadata=_spec(doc="batch: memory per job"))
    disk: str = field(default="10GiB", metadata=_spec(doc="batch: scratch disk per job"))
    walltime: str = field(
        default="04:00:00", metadata=_spec(doc="batch: run-time limit per job, [D-]HH:MM:SS")
    )
    queue: str = field(
        default="", metadata=_spec(doc="batch: Slurm partition, or HTCondor requirements")
    )
    job_extra_directives: tuple[str, ...] = field(
        default=(),
        metadata={
            **_spec(doc="batch: extra #SBATCH options, or HTCondor 'key = value' lines"),
            "may_be_empty": True,
        },
    )
    python: str = field(
        default="", metadata=_spec(doc="batch: interpreter on the nodes; '' = this one")
    )
    minimum_jobs: int = field(default=0, metadata=_spec(bounds=(0, 10000)))
    maximum_jobs: int = field(default=4, metadata=_spec(bounds=(1, 10000)))

    def __post_init__(self) -> None:
        for name in ("memory_limit", "memory", "disk"):
            value = getattr(self, name)
            if not _BYTES.match(value):
                raise ConfigError(f"dask.{name} = {value!r}: expected a size such as 8GiB or 500MB")
        if not _WALLTIME.match(self.walltime):
            raise ConfigError(
                f"dask.walltime = {self.walltime!r}: expected [D-]HH:MM:SS, e.g. 04:00:00"
            )
        if self.mode == "address" and not self.address:
            raise ConfigError(
                "dask.address = '': mode address needs the scheduler's address, "
                "e.g. tcp://host:8786 (or set DNDX_DASK_ADDRESS)"
            )
        if self.minimum_jobs > self.maximum_jobs:
            raise ConfigError(
                f"dask.minimum_jobs = {self.minimum_jobs} exceeds dask.maximum_jobs = "
                f"{self.maximum_jobs}"
            )
        if self.mode == "htcondor":
            for line in self.job_extra_directives:
                if "=" not in line:
                    raise ConfigError(
                        f"dask.job_extra_directives: {line!r}: HTCondor directives are "
                        "'key = value' lines"
                    )

    @property
    def walltime_seconds(self) -> int:
        """``walltime`` in seconds.

        >>> DaskConfig(walltime="1-02:00:30").walltime_seconds
        93630
        """
        days, _, clock = self.walltime.rpartition("-")
        hours, minutes, seconds = (int(part) for part in clock.split(":"))
        return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


_PEAK_FINDER_TRAINING = TrainingConfig(
    epochs=12,
    batch_size=1024,
    patience=4,
    max_train_examples=300_000,
    learning_rate_schedule="cosine",
    scan=ScanConfig(n_trials=1, space={"lstm_units": ((32, 32),), "learning_rate": (0.004,)}),
)
_COUNTER_TRAINING = TrainingConfig(
    epochs=24,
    batch_size=64,
    patience=6,
    max_train_examples=1_000_000,
    max_validation_examples=1_000_000,
    selection=("val_rms_over_sqrt_n", "val_abs_relative_bias"),
    learning_rate_schedule="cosine",
    scan=ScanConfig(n_trials=1, space={"filters": ((32, 64, 64),)}),
)


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``."""

    simulate: SimulationConfig = SimulationConfig()
    prepare: PrepareConfig = PrepareConfig()
    peak_finder: PeakFinderModelConfig = PeakFinderModelConfig()
    train_peak_finder: TrainingConfig = _PEAK_FINDER_TRAINING
    counter_input: CounterInputConfig = CounterInputConfig()
    cluster_counter: ClusterCounterModelConfig = ClusterCounterModelConfig()
    train_cluster_counter: TrainingConfig = _COUNTER_TRAINING
    evaluate: EvaluateConfig = EvaluateConfig()
    register: RegisterConfig = RegisterConfig()
    mlflow: MlflowConfig = MlflowConfig()
    dask: DaskConfig = DaskConfig()

    def __post_init__(self) -> None:
        sim = self.simulate
        if sim.rise_time_ns.high >= sim.fall_time_ns.low:
            raise ConfigError(
                f"simulate.rise_time_ns = {sim.rise_time_ns} must stay below "
                f"simulate.fall_time_ns = {sim.fall_time_ns}: a pulse rises faster than it falls"
            )
        for section, model in (
            ("train_peak_finder", PeakFinderModelConfig),
            ("train_cluster_counter", ClusterCounterModelConfig),
        ):
            space = getattr(self, section).scan.space
            object.__setattr__(
                getattr(self, section).scan, "space", _check_space(space, model, section)
            )
        if sim.chunk_size % sim.block_size:
            raise ConfigError(
                f"simulate.chunk_size = {sim.chunk_size} must be a multiple of "
                f"simulate.block_size = {sim.block_size}: chunks are made of whole random "
                "streams, so that chunking never changes the data"
            )


T = TypeVar("T")


def _describe(spec: Mapping[str, Any]) -> str:
    if spec.get("choices") is not None:
        return f"one of {list(spec['choices'])}"
    if spec.get("bounds") is not None:
        low, high = spec["bounds"]
        return f"a value in [{low}, {high}]"
    return "a value"


def _check_number(value: Any, kind: type, where: str, spec: Mapping[str, Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} = {value!r}: expected a number ({_describe(spec)})")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{where} = {value!r}: expected an integer ({_describe(spec)})")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{where} = {value!r}: expected a finite number")
    bounds = spec.get("bounds")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{where} = {value!r} is out of range: expected {_describe(spec)}")
    choices = spec.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where} = {value!r} is not allowed: expected {_describe(spec)}")
    return int(value) if kind is int else float(value)


def _convert(value: Any, annotation: Any, where: str, spec: Mapping[str, Any]) -> Any:
    if (
        isinstance(annotation, type)
        and dataclasses.is_dataclass(annotation)
        and annotation is not Range
    ):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of keys, got {value!r}")
        return _build(annotation, value, where)
    if annotation is Range:
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
        ):
            raise ConfigError(f"{where} = {value!r}: expected [low, high] ({_describe(spec)})")
        low = _check_number(value[0], float, f"{where}[0]", spec)
        high = _check_number(value[1], float, f"{where}[1]", spec)
        if low > high:
            raise ConfigError(f"{where} = {value!r}: low must not exceed high")
        return Range(low, high)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: expected true or false")
        return value
    if annotation in (int, float):
        return _check_number(value, annotation, where, spec)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: expected a string ({_describe(spec)})")
        choices = spec.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{where} = {value!r} is not allowed: expected {_describe(spec)}")
        return value
    origin = typing.get_origin(annotation)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(
            isinstance(v, list | tuple) and v for v in value.values()
        ):
            raise ConfigError(f"{where}: expected a mapping of names to non-empty lists of values")
        return {str(k): tuple(_freeze(x) for x in v) for k, v in value.items()}
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if not isinstance(value, list | tuple) or not (value or spec.get("may_be_empty")):
            raise ConfigError(f"{where} = {value!r}: expected a non-empty list")
        return tuple(
            _convert(item, item_type, f"{where}[{i}]", spec) for i, item in enumerate(value)
        )
    raise TypeError(f"unsupported annotation at {where}: {annotation}")


def _check_space(
    space: Mapping[str, tuple[Any, ...]], model: type, section: str
) -> dict[str, tuple[Any, ...]]:
    """Check a scan space against the model config's fields and convert its values."""
    hints = typing.get_type_hints(model)
    fields = {f.name: f for f in dataclasses.fields(model)}
    checked = {}
    for name, values in space.items():
        where = f"{section}.scan.space.{name}"
        if name not in fields:
            raise ConfigError(
                f"{where}: {model.__name__} has no such field; fields are {sorted(fields)}"
            )
        checked[name] = tuple(
            _convert(_as_list(v), hints[name], f"{where}[{i}]", fields[name].metadata)
            for i, v in enumerate(values)
        )
    return checked


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list | tuple) else value


def _build(cls: type[T], mapping: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or 'top level'}: unknown key(s) {unknown}; allowed keys are {sorted(fields)}"
        )
    values = {
        name: _convert(
            value, hints[name], f"{where}.{name}" if where else name, fields[name].metadata
        )
        for name, value in mapping.items()
    }
    return cls(**values)


def parse_params(mapping: Mapping[str, Any] | None, source: str = "params.yaml") -> Params:
    """Validate a parsed ``params.yaml`` mapping into :class:`Params`.

    Missing keys take their defaults; unknown keys are errors.

    >>> parse_params({"simulate": {"n_train": 10, "chunk_size": 250}}).simulate.n_train
    10
    >>> parse_params({"prepare": {"window_after": "nine"}})
    Traceback (most recent call last):
    ...
    dndx.errors.ConfigError: params.yaml: prepare.window_after = 'nine': expected a number ...
    """
    try:
        return _build(Params, mapping or {}, "")
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a parameter file.

    Raises:
        ConfigError: the file is missing, is not YAML, or holds a bad value.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the parameter file ({error.strerror})") from None
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if mapping is not None and not isinstance(mapping, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return parse_params(mapping, str(path))
