"""The cluster counter's remedies against shrinkage: flat count weights, the
calibration and the per-bin truth, on constructed counts with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dndx.chain.encoding import clusters_per_bin
from dndx.scoring.metrics import counting_metrics
from dndx.scoring.separation import separation_table, track_table
from dndx.training.counter_training import coarsen_bins, fit_calibration, flat_count_weights
from dndx.waveforms import WaveformSet


def test_flat_weights_give_every_count_the_same_total_weight() -> None:
    counts = np.repeat([10, 11, 12, 13], [40, 20, 10, 5])
    weights = flat_count_weights(counts)

    per_count = pd.Series(weights).groupby(counts).sum()
    np.testing.assert_allclose(per_count.to_numpy(), per_count.iloc[0], rtol=1e-6)
    assert weights.mean() == pytest.approx(1.0)
    assert weights.dtype == np.float32


def test_flat_weights_clip_the_rarest_counts() -> None:
    counts = np.repeat([10, 11, 30], [100, 50, 1])
    weights = flat_count_weights(counts, max_ratio=4.0)

    assert weights[counts == 30][0] / weights[counts == 10][0] == pytest.approx(4.0)
    assert weights[counts == 11][0] / weights[counts == 10][0] == pytest.approx(2.0)
    assert weights.mean() == pytest.approx(1.0)


def test_calibration_undoes_a_linear_shrinkage() -> None:
    rng = np.random.default_rng(5)
    truth = rng.poisson(20.0, 5000).astype(float)
    shrunk = 0.8 * truth + 4.0 + rng.normal(0.0, 1.5, len(truth))

    calibration = fit_calibration(shrunk, truth)
    calibrated = counting_metrics(calibration.apply(shrunk), truth)

    assert calibrated["linearity_slope"] == pytest.approx(1.0, abs=1e-9)
    assert calibrated["mean_residual"] == pytest.approx(0.0, abs=1e-9)
    assert calibration.scale == pytest.approx(1.25, rel=0.03)


def test_calibration_refuses_a_flat_output() -> None:
    with pytest.raises(ValueError, match=r"linearity slope is 0\.0"):
        fit_calibration(np.full(50, 20.0), np.arange(5.0, 55.0))


def test_a_calibrations_scale_keeps_separation_and_its_offset_moves_it() -> None:
    rng = np.random.default_rng(3)
    n_tracks, n_cells = 40, 50
    cells = pd.DataFrame(
        {
            "track_id": np.repeat(np.arange(n_tracks), n_cells),
            "particle": np.repeat(["pi", "K"], n_tracks * n_cells // 2),
            "momentum_gev": 10.0,
            "path_length_cm": rng.uniform(0.8, 1.6, n_tracks * n_cells),
        }
    )
    density = np.where(cells["particle"] == "pi", 14.0, 12.0)
    cells["truth"] = rng.poisson(density * cells["path_length_cm"])
    cells["shrunk"] = 0.8 * cells["truth"] + rng.normal(0.0, 1.0, len(cells))
    cells["scaled"] = 1.25 * cells["shrunk"]
    cells["offset"] = cells["shrunk"] - 4.0

    table = separation_table(
        track_table(cells, ["truth", "shrunk", "scaled", "offset"]),
        ["shrunk", "scaled", "offset"],
        "truth",
        [("pi", "K")],
    )

    separation = table.set_index("method")["separation"]
    assert separation["scaled"] == pytest.approx(separation["shrunk"], rel=1e-12)
    # The offset adds 4 / (mean path per cell) to each track's dN/dx: a different
    # amount on every track.
    assert separation["offset"] != pytest.approx(separation["shrunk"], rel=1e-3)


def test_coarse_bins_keep_each_rows_total() -> None:
    per_bin = np.random.default_rng(2).integers(0, 3, size=(6, 1000)).astype(np.uint16)

    coarse = coarsen_bins(per_bin, 125)

    assert coarse.shape == (6, 125)
    np.testing.assert_array_equal(coarse[:, 0], per_bin[:, :8].sum(axis=1))
    np.testing.assert_array_equal(coarse.sum(axis=1), per_bin.sum(axis=1))
    with pytest.raises(ValueError, match="cannot sum 1000 bins into 1001"):
        coarsen_bins(per_bin, 1001)


def test_clusters_per_bin_sit_at_their_primary_electrons_pulse() -> None:
    info = pd.DataFrame({"n_clusters": [2, 1], "peak_delay_ns": [0.0, 0.0]})
    electrons = pd.DataFrame(
        {
            "waveform": [0, 0, 0, 1],
            "time_ns": [10.0, 11.0, 30.0, 5000.0],
            "cluster": [0, 0, 1, 0],
            "primary": [True, False, True, True],
            "amplitude_adc": 1.0,
        }
    )
    data = WaveformSet(info, None, electrons, np.array([0, 3, 4]))  # type: ignore[arg-type]

    per_bin = clusters_per_bin(data, 1.0, 100, 10.0)  # 10 ns bins over 1 us

    assert per_bin[0].nonzero()[0].tolist() == [1, 3]
    # Past the window: in the last bin, so that the row still sums to n_clusters.
    assert per_bin[1].nonzero()[0].tolist() == [99]
    np.testing.assert_array_equal(per_bin.sum(axis=1), info["n_clusters"])
