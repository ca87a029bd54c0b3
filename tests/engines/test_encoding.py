"""Training and serving encode the counter's input through one function: the encode
stage's task on a prepared chunk and inference on the same raw waveforms give the
same encodings, with the same real Keras peak finder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.chain.bundle import ModelBundle
from dndx.chain.encoding import N_CHANNELS, samples_per_bin
from dndx.chain.inference import infer_waveforms
from dndx.config import parse_params
from dndx.io.dataset import part_name, read_waveform_set
from dndx.io.prepared import read_candidates
from tests.conftest import tiny_params


class KerasPeakFinder:
    """The peak-finder half of :class:`dndx.chain.inference.PeakModels` on a Keras model, as
    the encode task runs it; the counter half keeps the encodings it is given and
    counts their detected peaks."""

    def __init__(self, model_path: Path, bundle: ModelBundle) -> None:
        from models.saving import load_model

        self.model = load_model(model_path)
        self.bundle = bundle
        self.encodings: list[NDArray[np.float32]] = []

    def peak_probability(self, windows: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(self.model.predict(windows[:, :, None], batch_size=8192, verbose=0))[:, 0]

    def count_clusters(self, peaks: NDArray[np.float32]) -> NDArray[np.float32]:
        self.encodings.append(peaks)
        return peaks[:, :, 0].sum(axis=1)


def test_training_and_inference_encode_the_same_waveforms(
    prepared_data: Path, untrained_pair: Path, tmp_path: Path, shared_dask: str
) -> None:
    from tasks.encoding import encode_chunk

    params = parse_params(tiny_params())
    rate = params.prepare.candidates.model_sampling_rate_ghz
    n_bins = params.counter_input.n_bins
    simulated = prepared_data / "data/simulated/test" / part_name(0)
    model_path = untrained_pair / "peak_finder.keras"
    # A working point inside the untrained model's range, so that both decisions occur.
    candidates, windows = read_candidates(prepared_data / "data/prepared/test")
    bundle = ModelBundle(
        candidates=params.prepare.candidates,
        score_threshold=0.0,
        n_bins=n_bins,
        samples_per_bin=samples_per_bin(params.simulate.window_ns, rate, n_bins),
        provenance={},
        d2=None,
    )
    models = KerasPeakFinder(model_path, bundle)
    threshold = float(np.median(models.peak_probability(windows)))
    models.bundle = dataclasses.replace(bundle, score_threshold=threshold)

    encode_chunk(
        "test",
        0,
        simulated,
        prepared_data / "data/prepared/test/candidates" / part_name(0),
        model_path,
        threshold,
        params.prepare,
        params.counter_input,
        params.simulate.window_ns,
        tmp_path,
    )
    with np.load(tmp_path / "test" / "encoded-part-00000.npz") as trained:
        training_x, training_ids = trained["x"], trained["waveform_id"]
        per_bin = trained["clusters_per_bin"]
    scores = pd.read_parquet(tmp_path / "test" / f"scores-{part_name(0)}")

    data = read_waveform_set(simulated)
    assert training_ids.tolist() == data.info["waveform_id"].tolist()
    assert per_bin.shape == (len(training_ids), n_bins)
    np.testing.assert_array_equal(per_bin.sum(axis=1), data.info["n_clusters"])
    rates = data.info["sampling_rate_ghz"].to_numpy()
    for input_rate in np.unique(rates):
        rows = np.flatnonzero(rates == input_rate)
        found = infer_waveforms(data.adc.take(rows), float(input_rate), "auto", models)
        served = models.encodings[-1]
        assert served.shape == (len(rows), n_bins, N_CHANNELS)
        np.testing.assert_array_equal(served, training_x[rows])
        detected = scores[scores["detected"]].groupby("waveform_id")["sample"].apply(list)
        for waveform_id, times_ns in zip(
            data.info["waveform_id"].to_numpy()[rows], found["peak_time_ns"], strict=True
        ):
            expected = detected.get(waveform_id, [])
            np.testing.assert_allclose(np.asarray(times_ns) * rate, expected, atol=1e-3)
    # Both decisions were taken, so the comparison covered detected and rejected candidates.
    assert 0 < scores["detected"].sum() < len(scores)
    assert len(scores) == int(candidates["waveform_id"].isin(training_ids).sum())
