"""How far can the candidates' pre-selection go at no loss? The recall-safe
window-spread threshold on validation, and what it keeps and loses on test.

The registered peak finder (``data/bundle``) scores every candidate of the
simulated validation and test waveforms, found as ``prepare`` finds them but
without any pre-selection; the threshold is the least spread
(:func:`dndx.chain.preselection.window_spread`) of a validation window it accepts,
less ``--margin``. On test the script counts the windows the threshold spares
the peak finder and the accepted candidates, and the true accepted peaks, it
would lose; the curvature, the pre-selection tried before, is measured the same
way beside it. ``prepare.candidates.min_window_std_sigma`` in ``params.yaml`` takes the
threshold.

Needs ``make run``'s ``data/simulated`` and ``data/bundle`` (``--data`` names
another ``data`` directory); writes ``benchmarks/results/preselect.json``.

    python -m benchmarks.preselect [--margin 0.1] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.chain.candidates import candidate_curvature
from dndx.chain.onnx import OnnxModels
from dndx.chain.preselection import recall_safe_threshold, window_spread
from dndx.config import load_params, with_candidates
from dndx.io.dataset import part_paths, read_waveform_set
from dndx.ragged import Ragged
from dndx.truth.preparation import PreparedChunk, prepare_waveforms

RESULTS = Path(__file__).parent / "results" / "preselect.json"


def window_curvature(windows: NDArray[np.float32], window_before: int) -> NDArray[np.float32]:
    """``(n_windows,)`` each candidate's curvature, read off its own window
    (the window holds the five samples around the candidate it needs)."""
    centres = Ragged.from_lengths(np.full(len(windows), window_before), np.ones(len(windows)))
    return candidate_curvature(windows, centres)


def prepare_every_candidate(simulated_dir: Path) -> PreparedChunk:
    """The candidates, windows and labels of every waveform in ``simulated_dir``,
    as ``prepare`` makes them with the pre-selection off."""
    prepare = with_candidates(
        load_params().prepare, min_curvature_sigma=0.0, min_window_std_sigma=0.0
    )
    chunks = [prepare_waveforms(read_waveform_set(p), prepare) for p in part_paths(simulated_dir)]
    return PreparedChunk(
        pd.concat([c.candidates for c in chunks], ignore_index=True),
        np.concatenate([c.windows for c in chunks]),
        pd.concat([c.waveforms for c in chunks], ignore_index=True),
    )


def measure(
    feature: dict[str, NDArray[np.float32]],
    accepted: dict[str, NDArray[np.bool_]],
    true: NDArray[np.bool_],
    margin: float,
) -> dict[str, float | int]:
    """The threshold on validation and what it keeps and loses on test."""
    threshold = recall_safe_threshold(feature["validation"], accepted["validation"], margin)
    kept = feature["test"] >= threshold
    test_accepted = accepted["test"]
    return {
        "threshold": threshold,
        "validation_least_accepted": float(feature["validation"][accepted["validation"]].min()),
        "test_windows_kept_fraction": float(kept.mean()),
        "test_accepted_lost": int((test_accepted & ~kept).sum()),
        "test_true_accepted_lost": int((test_accepted & true & ~kept).sum()),
        "test_true_lost": int((true & ~kept).sum()),
    }


def main() -> None:
    """Choose the thresholds on validation and measure them on test."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--margin", type=float, default=0.1)
    parser.add_argument("--data", type=Path, default=Path("data"))
    args = parser.parse_args()
    models = OnnxModels.load(args.data / "bundle")
    bundle = models.bundle
    spread, curvature, accepted = {}, {}, {}
    for split in ("validation", "test"):
        prepared = prepare_every_candidate(args.data / "simulated" / split)
        windows = prepared.windows
        accepted[split] = models.peak_probability(windows) >= bundle.score_threshold
        spread[split] = window_spread(windows)
        curvature[split] = window_curvature(windows, bundle.candidates.window_before)
        if split == "test":
            true = prepared.candidates["label"].to_numpy() == 1
            n_waveforms = len(prepared.waveforms)
    result = {
        "bundle_min_window_std_sigma": bundle.candidates.min_window_std_sigma,
        "bundle_min_curvature_sigma": bundle.candidates.min_curvature_sigma,
        "margin": args.margin,
        "test_waveforms": n_waveforms,
        "test_windows": len(true),
        "test_windows_per_waveform": len(true) / n_waveforms,
        "test_accepted": int(accepted["test"].sum()),
        "test_true": int(true.sum()),
        "window_spread": measure(spread, accepted, true, args.margin),
        "curvature": measure(curvature, accepted, true, args.margin),
    }
    print(json.dumps(result, indent=2), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
