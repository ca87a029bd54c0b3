"""Does the counter's richer input help? The same CNN trained on peak times alone
(channel 0 of the encoding) and on all four channels (heights, soft counts and the
waveform too), scored on validation against the true cluster count.

Needs a finished ``encode`` stage (``data/counter_inputs``); writes
``benchmarks/results/encoding.json``.

    python -m benchmarks.encoding [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import numpy as np

from dndx.config import load_params
from dndx.scoring.metrics import counting_metrics
from models import build_cluster_counter

RESULTS = Path(__file__).parent / "results" / "encoding.json"
INPUTS = Path("data/counter_inputs")
CHANNELS = {"peak times only": [0], "all four channels": [0, 1, 2, 3]}


def main() -> None:
    """Train one CNN per input choice and write their validation scores."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    train = np.load(INPUTS / "train/encoded.npz")
    validation = np.load(INPUTS / "validation/encoded.npz")
    result: dict[str, object] = {"epochs": args.epochs, "n_train": len(train["n_clusters"])}
    for name, channels in CHANNELS.items():
        keras.utils.set_random_seed(1)
        model = build_cluster_counter(
            load_params().cluster_counter,
            n_bins=train["x"].shape[1],
            n_channels=len(channels),
            seed=1,
        )
        model.fit(
            train["x"][:, :, channels],
            train["n_clusters"].astype(np.float32),
            batch_size=64,
            epochs=args.epochs,
            validation_data=(validation["x"][:, :, channels], validation["n_clusters"]),
            callbacks=[keras.callbacks.EarlyStopping(patience=4, restore_best_weights=True)],
            verbose=0,
        )
        predicted = model.predict(validation["x"][:, :, channels], verbose=0)[:, 0]
        scores = counting_metrics(predicted, validation["n_clusters"])
        result[name] = {
            k: round(float(scores[k]), 4)
            for k in ("relative_bias", "rms_over_sqrt_n", "linearity_slope")
        }
        print(name, result[name], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
