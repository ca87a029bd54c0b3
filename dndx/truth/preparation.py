"""The ``prepare`` stage's work on one chunk: candidates, windows and labels.

Waveforms are normalised exactly as at inference (no truth is used), the
candidates are found and cut into windows, and the truth decides the labels
and the per-waveform targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.chain.candidates import candidate_step
from dndx.config import PrepareConfig
from dndx.ragged import Ragged
from dndx.truth.labels import expected_peaks, match_peaks
from dndx.waveforms import WaveformSet, peak_delay_ns

__all__ = ["WAVEFORM_TRUTH_COLUMNS", "PreparedChunk", "prepare_waveforms"]

#: Per-waveform truth carried into the prepared data, for targets and binned metrics.
WAVEFORM_TRUTH_COLUMNS: tuple[str, ...] = (
    "waveform_id",
    "particle",
    "momentum_gev",
    "beta_gamma",
    "path_length_cm",
    "n_clusters",
    "n_electrons",
    "noise_fraction",
    "sampling_rate_ghz",
    "polarity",
)


@dataclass(frozen=True, eq=False)
class PreparedChunk:
    """Prepared data of one chunk of waveforms.

    Attributes:
        candidates: ``(n_candidates, ...)`` one row per candidate: ``waveform_id``,
            ``sample`` and ``time_ns`` at the model rate, ``label`` (1 = matched
            to an expected peak), ``drift_time_ns`` of the matched peak (NaN for
            noise). Heights are the encoding's to compute
            (:func:`dndx.chain.encoding.encode_scored_candidates`), as at inference.
        windows: ``(n_candidates, window_length)`` float32 model inputs.
        waveforms: ``(n_waveforms, ...)`` truth per waveform plus
            ``n_candidates``, ``n_signal_candidates``, ``n_expected_peaks``,
            ``n_primary_peaks`` (expected peaks holding a primary electron) and
            the list columns ``expected_time_ns``, ``expected_drift_time_ns``,
            ``expected_n_primary``.
    """

    candidates: pd.DataFrame
    windows: NDArray[np.float32]
    waveforms: pd.DataFrame


def prepare_waveforms(data: WaveformSet, cfg: PrepareConfig) -> PreparedChunk:
    """Candidates, windows and truth labels of simulated waveforms."""
    info = data.info
    rate = cfg.candidates.model_sampling_rate_ghz
    norm, candidates, windows = candidate_step(
        data.adc, info["sampling_rate_ghz"].to_numpy(), "auto", cfg.candidates
    )

    electrons = data.electrons
    electron_times = Ragged(electrons["time_ns"].to_numpy(), data.electron_offsets)
    expected = expected_peaks(
        electron_times,
        electrons["amplitude_adc"].to_numpy(),
        electrons["primary"].to_numpy(),
        peak_delay_ns(info),
        cfg.resolving_time_ns,
        window_ns=norm.lengths / rate,
    )
    expected_samples = Ragged(expected.time_ns.values * rate, expected.time_ns.offsets)
    matching = match_peaks(candidates, expected_samples, cfg.match_tolerance_samples)

    waveform_ids = info["waveform_id"].to_numpy()
    candidate_rows = candidates.row_index()
    label = (matching.detection_match >= 0).astype(np.int8)
    drift_ns = (
        expected.arrival_ns
        - info.get("trigger_offset_ns", np.nan + info["sampling_rate_ghz"]).to_numpy()[
            expected.time_ns.row_index()
        ]
    )
    matched_drift = np.where(label == 1, drift_ns[np.maximum(matching.detection_match, 0)], np.nan)
    candidate_table = pd.DataFrame(
        {
            "waveform_id": waveform_ids[candidate_rows],
            "sample": candidates.values.astype(np.int32),
            "time_ns": (candidates.values / rate).astype(np.float32),
            "label": label,
            "drift_time_ns": matched_drift.astype(np.float32),
        }
    )

    n_waveforms = len(info)
    waveforms = info.loc[:, list(WAVEFORM_TRUTH_COLUMNS)].reset_index(drop=True)
    waveforms["n_candidates"] = candidates.lengths
    waveforms["n_signal_candidates"] = np.bincount(
        candidate_rows, weights=label, minlength=n_waveforms
    ).astype(np.int64)
    waveforms["n_expected_peaks"] = expected.time_ns.lengths
    waveforms["n_primary_peaks"] = np.bincount(
        expected.time_ns.row_index(), weights=expected.n_primary > 0, minlength=n_waveforms
    ).astype(np.int64)
    waveforms["expected_time_ns"] = _split(
        expected.time_ns.values.astype(np.float32), expected.time_ns
    )
    waveforms["expected_drift_time_ns"] = _split(drift_ns.astype(np.float32), expected.time_ns)
    waveforms["expected_n_primary"] = _split(expected.n_primary.astype(np.int16), expected.time_ns)
    return PreparedChunk(candidate_table, windows, waveforms)


def _split(values: NDArray, like: Ragged) -> list[NDArray]:
    return np.split(values, like.offsets[1:-1])
