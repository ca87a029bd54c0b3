"""A model bundle scored through ONNX Runtime, as it is served: its test figures
(peak efficiency x purity, counting) and the separation power it keeps on the
validation tracks. Register scores the new pair and the champion pair with these,
and :mod:`dndx.scoring.promotion` decides between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.chain.encoding import COUNTER_INPUT_FILE
from dndx.chain.inference import infer_waveforms
from dndx.chain.onnx import OnnxModels
from dndx.config import CounterTrainingConfig, Params
from dndx.errors import InputError
from dndx.io.dataset import part_paths, read_waveform_set
from dndx.io.prepared import read_candidates, read_prepared_waveforms
from dndx.ragged import Ragged
from dndx.scoring.evaluation import evaluate_counting, evaluate_peaks
from dndx.scoring.promotion import SEPARATION
from dndx.scoring.separation import mean_separation_ratio, selection_rows
from dndx.waveforms import WaveformSet

__all__ = [
    "RegistryInputs",
    "load_test_set",
    "load_validation_tracks",
    "score_bundle",
    "score_separation",
]


def _infer(models: OnnxModels, waveforms: WaveformSet) -> pd.DataFrame:
    """:func:`dndx.chain.inference.infer_waveforms` of waveforms of any rates, in their order."""
    rates = waveforms.info["sampling_rate_ghz"].to_numpy()
    results = []
    for rate in np.unique(rates):
        rows = np.flatnonzero(rates == rate)
        found = infer_waveforms(waveforms.adc.take(rows), float(rate), "auto", models)
        results.append(found.assign(row=rows))
    return pd.concat(results).sort_values("row")


def score_bundle(
    bundle_dir: Path, test: WaveformSet, truth: pd.DataFrame, params: Params
) -> dict[str, float]:
    """Run a bundle through the inference path (ONNX Runtime) on the test waveforms
    and score it against the truth: peak efficiency x purity and counting figures."""
    found = _infer(OnnxModels.load(bundle_dir), test)
    rate = params.prepare.candidates.model_sampling_rate_ghz
    detected = Ragged.from_rows([np.asarray(t) * rate for t in found["peak_time_ns"]], np.float64)
    expected = Ragged.from_rows(
        [np.asarray(t) * rate for t in truth["expected_time_ns"]], np.float64
    )
    peaks = evaluate_peaks(
        Ragged(np.rint(detected.values), detected.offsets),
        expected,
        np.concatenate([np.asarray(t) for t in truth["expected_drift_time_ns"]]),
        truth["noise_fraction"].to_numpy(),
        sampling_rate_ghz=rate,
        tolerance_samples=params.prepare.match_tolerance_samples,
        drift_time_edges_ns=params.evaluate.drift_time_edges_ns,
        noise_fraction_edges=params.evaluate.noise_fraction_edges,
    )
    counting = evaluate_counting(
        # Every simulated waveform has a truth: scored like the evaluate stage, counted or not.
        found["counter_output"].to_numpy(),
        truth["n_clusters"].to_numpy(),
        truth["particle"].to_numpy(),
        truth["momentum_gev"].to_numpy(),
        params.evaluate.momentum_edges_gev,
    )
    return {
        "peak_efficiency_x_purity": peaks.scores["efficiency_x_purity"],
        "peak_efficiency": peaks.scores["efficiency"],
        "peak_purity": peaks.scores["purity"],
        "rms_over_sqrt_n": counting.scores["rms_over_sqrt_n"],
        "relative_bias": counting.scores["relative_bias"],
        "linearity_slope": counting.scores["linearity_slope"],
    }


def load_validation_tracks(tracks_dir: Path, training: CounterTrainingConfig) -> WaveformSet | None:
    """The cells of the validation tracks in ``tracks_dir`` of the particles and
    momenta the counter is judged on (``separation_pair``, ``separation_momenta_gev``),
    or None where there are none."""
    chosen = []
    for path in part_paths(tracks_dir):
        cells = read_waveform_set(path)
        rows = selection_rows(
            cells.info["particle"],
            cells.info["momentum_gev"],
            training.separation_pair,
            training.separation_momenta_gev,
        )
        if len(rows):
            chosen.append(cells.take(rows))
    return WaveformSet.concatenate(chosen) if chosen else None


def score_separation(
    bundle_dir: Path, tracks: WaveformSet | None, training: CounterTrainingConfig
) -> dict[str, float]:
    """S / S_Poisson of a bundle (ONNX Runtime) on ``tracks``
    (:func:`load_validation_tracks`), averaged over the separation momenta, with its
    uncertainty: ``separation_ratio`` and ``separation_ratio_error``; empty where
    nothing is measured."""
    if tracks is None:
        return {}
    found = _infer(OnnxModels.load(bundle_dir), tracks)
    cells = tracks.info[["track_id", "particle", "momentum_gev", "path_length_cm"]].assign(
        truth=tracks.info["n_clusters"].to_numpy(), counted=found["counter_output"].to_numpy()
    )
    ratio = mean_separation_ratio(
        cells, "counted", "truth", training.separation_pair, training.separation_momenta_gev
    )
    if not np.isfinite(ratio.value):
        return {}
    return {SEPARATION: ratio.value, f"{SEPARATION}_error": ratio.error}


@dataclass(frozen=True, eq=False)
class RegistryInputs:
    """The test split as the register stage uses it, loaded once.

    Attributes:
        waveforms: the raw test waveforms.
        truth: ``(n_waveforms, ...)`` their prepared truth, in the same order.
        windows: ``(n_candidates, window_length, 1)`` float32 peak-finder inputs.
        encoded: ``(n_waveforms, n_bins, N_CHANNELS)`` float32 cluster-counter inputs.
    """

    waveforms: WaveformSet
    truth: pd.DataFrame
    windows: NDArray[np.float32]
    encoded: NDArray[np.float32]


def load_test_set(simulated_dir: Path, prepared_dir: Path, inputs_dir: Path) -> RegistryInputs:
    """The test waveforms, their truth, candidate windows and counter inputs."""
    parts = sorted(simulated_dir.glob("part-*.parquet"))
    if not parts:
        raise InputError(f"{simulated_dir}: no simulated test waveforms")
    test = WaveformSet.concatenate([read_waveform_set(p) for p in parts])
    truth = read_prepared_waveforms(prepared_dir)
    if not np.array_equal(truth["waveform_id"], test.info["waveform_id"]):
        raise InputError(f"{prepared_dir}: prepared waveforms do not match {simulated_dir}")
    _, windows = read_candidates(prepared_dir)
    try:
        with np.load(inputs_dir / COUNTER_INPUT_FILE) as data:
            encoded = data["x"]
    except (OSError, KeyError, ValueError) as error:
        raise InputError(
            f"{inputs_dir / COUNTER_INPUT_FILE}: cannot read the counter inputs 'x' ({error}); "
            "run the encode stage first"
        ) from None
    return RegistryInputs(test, truth, windows[:, :, None], encoded)
