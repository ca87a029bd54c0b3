"""A model bundle: the two ONNX models and everything inference needs to use them.

On disk a bundle is a directory::

    bundle.json            this dataclass, as JSON (:meth:`ModelBundle.to_json`)
    peak_finder.onnx       input "window" (batch, window_length, 1) -> "peak_probability" (batch, 1)
    cluster_counter.onnx   input "peaks" (batch, n_bins, 4) -> "n_clusters" (batch, 1)
    domain.json            training domain profile (dndx.domain.profile.TrainingDomain);
                           absent from bundles registered before it was stored

The same directory is what the registry stores, so a model fetched from
MLflow and one exported locally are used the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    model_validator,
)
from pydantic.dataclasses import dataclass

from dndx.config import CandidateConfig, validate_mapping
from dndx.errors import ConfigError, InputError
from dndx.storage import atomic_file

__all__ = ["BUNDLE_FILE", "COUNTER_FILE", "PEAK_FINDER_FILE", "D2Settings", "ModelBundle"]

BUNDLE_FILE = "bundle.json"
PEAK_FINDER_FILE = "peak_finder.onnx"
COUNTER_FILE = "cluster_counter.onnx"

_BUNDLE = ConfigDict(extra="forbid", allow_inf_nan=False)

#: The keys of :class:`~dndx.config.CandidateConfig` that bundles written before it
#: existed held at the top level, and the value of those they may lack: bundles
#: written before the pre-selection existed were trained on every candidate.
_FLAT_CANDIDATE_KEYS: dict[str, float | None] = {
    "model_sampling_rate_ghz": None,
    "candidate_threshold_sigma": None,
    "min_curvature_sigma": 0.0,
    "min_window_std_sigma": 0.0,
    "window_before": None,
    "window_after": None,
}


@dataclass(frozen=True, config=_BUNDLE)
class D2Settings:
    """The classical chain's settings, as the evaluation tuned them on validation.

    Attributes:
        t1_sigma, t2: :func:`dndx.chain.baselines.d2_peaks` thresholds.
        window_ns, growth_ns_per_sqrt_ns: :func:`dndx.chain.baselines.time_clusterize`
            window for the D2 peaks.
    """

    t1_sigma: StrictFloat
    t2: StrictFloat
    window_ns: StrictFloat
    growth_ns_per_sqrt_ns: StrictFloat

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any], path: str | Path) -> D2Settings:
        """The settings from the evaluation's flat metrics (``tuning.d2.*`` and
        ``tuning.d2_clusterization.*``), read from ``path``.

        >>> D2Settings.from_metrics({"tuning.d2.t1_sigma": 3.0, "tuning.d2.t2": 1.5,
        ...     "tuning.d2_clusterization.window_ns": 2.0,
        ...     "tuning.d2_clusterization.growth_ns_per_sqrt_ns": 0.1}, "m.json").t2
        1.5
        """
        keys = {
            "t1_sigma": "tuning.d2.t1_sigma",
            "t2": "tuning.d2.t2",
            "window_ns": "tuning.d2_clusterization.window_ns",
            "growth_ns_per_sqrt_ns": "tuning.d2_clusterization.growth_ns_per_sqrt_ns",
        }
        missing = sorted(key for key in keys.values() if key not in metrics)
        if missing:
            raise InputError(f"{path}: missing the evaluation's D2 tuning {missing}")
        return cls(**{name: float(metrics[key]) for name, key in keys.items()})


@dataclass(frozen=True, config=_BUNDLE)
class ModelBundle:
    """What inference needs besides the ONNX graphs.

    Attributes:
        candidates: the candidate step, as in training (the ``prepare`` section's).
        score_threshold: peak-finder probability at the working point.
        n_bins, samples_per_bin: the cluster counter's input encoding.
        provenance: free-form lineage (scan run, data hash, git commit...).
        d2: the D2 baseline's tuned settings, for ``dndx infer --method d2``;
            None where the bundle was registered without an evaluation.
    """

    candidates: CandidateConfig
    #: Above 1 (infinite included) where the peak finder accepts nothing.
    score_threshold: Annotated[StrictFloat, Field(ge=0.0, allow_inf_nan=True)]
    n_bins: Annotated[StrictInt, Field(ge=1)]
    samples_per_bin: Annotated[StrictFloat, Field(gt=0.0)]
    provenance: dict[StrictStr, StrictStr]
    d2: D2Settings | None

    @model_validator(mode="before")
    @classmethod
    def _nest_earlier_layout(cls, raw: Any) -> Any:
        """Read bundles of earlier releases: the candidate settings at the top
        level, ``provenance`` and ``d2`` optional."""
        if not isinstance(raw, dict) or "candidates" in raw:
            return raw
        flat = {key: raw[key] for key in _FLAT_CANDIDATE_KEYS if key in raw}
        nested: dict[str, Any] = {"provenance": {}, "d2": None}
        nested |= {key: value for key, value in raw.items() if key not in flat}
        nested["candidates"] = {
            key: flat.get(key, default)
            for key, default in _FLAT_CANDIDATE_KEYS.items()
            if key in flat or default is not None
        }
        return nested

    def to_json(self) -> dict[str, Any]:
        """The bundle as ``bundle.json`` holds it.

        >>> from dndx.config import load_params
        >>> bundle = ModelBundle(load_params().prepare.candidates, 0.5, 1024, 3.0, {}, None)
        >>> sorted(bundle.to_json())
        ['candidates', 'd2', 'n_bins', 'provenance', 'samples_per_bin', 'score_threshold']
        """
        json_form: dict[str, Any] = TypeAdapter(ModelBundle).dump_python(self, mode="json")
        return json_form

    def save(self, directory: str | Path) -> Path:
        """Write ``bundle.json`` into ``directory``, atomically."""
        path = Path(directory) / BUNDLE_FILE
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        """Read a bundle directory, of this release or an earlier one, checking
        that both ONNX files are there.

        Raises:
            InputError: ``bundle.json`` is unreadable or not JSON, a key of it is
                missing, unknown or bad (named with its value), or an ONNX file
                is missing.
        """
        directory = Path(directory)
        path = directory / BUNDLE_FILE
        try:
            raw: Any = json.loads(path.read_text())
        except OSError as error:
            raise InputError(f"{path}: cannot read the model bundle ({error.strerror})") from None
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not valid JSON ({error})") from None
        try:
            bundle = validate_mapping(cls, raw, path)
        except ConfigError as error:
            raise InputError(str(error)) from None
        for onnx_file in (PEAK_FINDER_FILE, COUNTER_FILE):
            if not (directory / onnx_file).is_file():
                raise InputError(f"{directory}: the bundle has no {onnx_file}")
        return bundle
