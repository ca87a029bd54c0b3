"""How far can the candidates' pre-selection go at no loss? The recall-safe
curvature threshold on validation, and what it keeps and loses on test.

The registered peak finder (``data/bundle``) scores every prepared candidate of
validation and test; the threshold is the least curvature of a validation
candidate it accepts, less ``--margin``. On test the script counts the windows
the threshold spares the peak finder and the accepted candidates, and the true
accepted peaks, it would lose. Set ``prepare.min_curvature_sigma`` in
``params.yaml`` to the threshold to use it (the prepared data must be made
without pre-selection for the measurement: it is 0 by default).

Needs ``make run``'s ``data/prepared`` and ``data/bundle``; writes
``benchmarks/results/preselect.json``.

    python -m benchmarks.preselect [--margin 0.1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dndx.candidates import candidate_curvature, recall_safe_curvature
from dndx.dataset import read_candidates
from dndx.ragged import Ragged
from tasks.onnx_models import OnnxModels

RESULTS = Path(__file__).parent / "results" / "preselect.json"
PREPARED = Path("data/prepared")
BUNDLE = Path("data/bundle")


def window_curvature(windows: NDArray[np.float32], window_before: int) -> NDArray[np.float32]:
    """``(n_windows,)`` each candidate's curvature, read off its own window
    (the window holds the five samples around the candidate it needs)."""
    centres = Ragged.from_lengths(np.full(len(windows), window_before), np.ones(len(windows)))
    return candidate_curvature(windows, centres)


def main() -> None:
    """Choose the threshold on validation and measure it on test."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--margin", type=float, default=0.1)
    args = parser.parse_args()
    models = OnnxModels.load(BUNDLE)
    bundle = models.bundle
    scored = {}
    for split in ("validation", "test"):
        table, windows = read_candidates(PREPARED / split)
        accepted = models.peak_probability(windows) >= bundle.score_threshold
        curvature = window_curvature(windows, bundle.window_before)
        scored[split] = (curvature, accepted, table["label"].to_numpy() == 1)
    curvature, accepted, _ = scored["validation"]
    threshold = recall_safe_curvature(curvature, accepted, args.margin)
    curvature, accepted, true = scored["test"]
    kept = curvature >= threshold
    result = {
        "bundle_min_curvature_sigma": bundle.min_curvature_sigma,
        "margin": args.margin,
        "min_curvature_sigma": threshold,
        "test_windows": len(kept),
        "test_windows_kept_fraction": float(kept.mean()),
        "test_accepted": int(accepted.sum()),
        "test_accepted_lost": int((accepted & ~kept).sum()),
        "test_true_accepted_lost": int((accepted & true & ~kept).sum()),
        "test_true_lost": int((true & ~kept).sum()),
        "test_true": int(true.sum()),
    }
    print(json.dumps(result, indent=2), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
