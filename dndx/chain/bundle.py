"""A model bundle: the two ONNX models and everything inference needs to use them.

On disk a bundle is a directory::

    bundle.json            this dataclass, as JSON
    peak_finder.onnx       input "window" (batch, window_length, 1) -> "peak_probability" (batch, 1)
    cluster_counter.onnx   input "peaks" (batch, n_bins, 4) -> "n_clusters" (batch, 1)
    domain.json            training domain profile (dndx.domain.profile.TrainingDomain);
                           absent from bundles registered before it was stored

The same directory is what the registry stores, so a model fetched from
MLflow and one exported locally are used the same way.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dndx.errors import InputError
from dndx.storage import atomic_file

__all__ = ["BUNDLE_FILE", "COUNTER_FILE", "PEAK_FINDER_FILE", "D2Settings", "ModelBundle"]

BUNDLE_FILE = "bundle.json"
PEAK_FINDER_FILE = "peak_finder.onnx"
COUNTER_FILE = "cluster_counter.onnx"


@dataclass(frozen=True)
class D2Settings:
    """The classical chain's settings, as the evaluation tuned them on validation.

    Attributes:
        t1_sigma, t2: :func:`dndx.chain.baselines.d2_peaks` thresholds.
        window_ns, growth_ns_per_sqrt_ns: :func:`dndx.chain.baselines.time_clusterize`
            window for the D2 peaks.
    """

    t1_sigma: float
    t2: float
    window_ns: float
    growth_ns_per_sqrt_ns: float

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


@dataclass(frozen=True)
class ModelBundle:
    """What inference needs besides the ONNX graphs.

    Attributes:
        model_sampling_rate_ghz: inputs are resampled to this rate.
        candidate_threshold_sigma: candidate threshold in noise units.
        min_curvature_sigma: the candidates' pre-selection in noise units
            (:func:`dndx.chain.candidates.find_candidates`), as in training.
        window_before, window_after: the candidate window around a sample.
        score_threshold: peak-finder probability at the working point.
        n_bins, samples_per_bin: the cluster counter's input encoding.
        provenance: free-form lineage (scan run, data hash, git commit...).
        d2: the D2 baseline's tuned settings, for ``dndx infer --method d2``;
            None where the bundle was registered without an evaluation.
        min_window_std_sigma: the candidates' pre-selection on their window's
            spread (:func:`dndx.chain.preselection.select_candidates`), as in training;
            0 for bundles written before it existed, trained on every candidate.
    """

    model_sampling_rate_ghz: float
    candidate_threshold_sigma: float
    min_curvature_sigma: float
    window_before: int
    window_after: int
    score_threshold: float
    n_bins: int
    samples_per_bin: float
    provenance: dict[str, str] = field(default_factory=dict)
    d2: D2Settings | None = None
    min_window_std_sigma: float = 0.0

    @property
    def window_length(self) -> int:
        """Samples per candidate window."""
        return self.window_before + 1 + self.window_after

    def save(self, directory: str | Path) -> Path:
        """Write ``bundle.json`` into ``directory``, atomically."""
        path = Path(directory) / BUNDLE_FILE
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        """Read a bundle directory, checking that both ONNX files are there."""
        directory = Path(directory)
        path = directory / BUNDLE_FILE
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except OSError as error:
            raise InputError(f"{path}: cannot read the model bundle ({error.strerror})") from None
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not valid JSON ({error})") from None
        names = {f.name for f in dataclasses.fields(cls)}
        # Bundles written before the pre-selection existed were trained on every candidate.
        raw.setdefault("min_curvature_sigma", 0.0)
        missing = sorted(names - set(raw) - {"provenance", "d2", "min_window_std_sigma"})
        if missing:
            raise InputError(f"{path}: missing field(s) {missing}")
        for onnx_file in (PEAK_FINDER_FILE, COUNTER_FILE):
            if not (directory / onnx_file).is_file():
                raise InputError(f"{directory}: the bundle has no {onnx_file}")
        fields = {k: v for k, v in raw.items() if k in names}
        if fields.get("d2") is not None:
            try:
                fields["d2"] = D2Settings(**fields["d2"])
            except TypeError as error:
                raise InputError(f"{path}: bad 'd2' settings ({error})") from None
        return cls(**fields)
