"""Separation statistics on constructed tracks with a known answer."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from dndx.scoring.separation import (
    mean_separation_ratio,
    particle_pairs,
    resolution_table,
    selection_rows,
    separation_power,
    separation_ratio,
    separation_table,
    spread,
    track_dndx,
    track_table,
    truncated_mean,
)
from dndx.scoring.track_evaluation import TRACK_METHODS, TRUTH, evaluate_tracks

N_CELLS = 100
PATH_CM = 1.2  # every cell's path, so that a track's dN/dx is Poisson(lambda * 120) / 120
DENSITY_PER_CM = {"pi": 14.0, "K": 12.5}


def _poisson_tracks(rng: np.random.Generator, particle: str, n_tracks: int) -> pd.DataFrame:
    """Cells of ``n_tracks`` tracks whose cluster counts are Poisson."""
    n = n_tracks * N_CELLS
    return pd.DataFrame(
        {
            "track_id": np.repeat(np.arange(n_tracks), N_CELLS),
            "particle": particle,
            "momentum_gev": 10.0,
            "path_length_cm": PATH_CM,
            "n_clusters": rng.poisson(DENSITY_PER_CM[particle] * PATH_CM, n),
        }
    )


def _analytic_separation() -> float:
    path_cm = N_CELLS * PATH_CM
    sigma = {p: math.sqrt(d / path_cm) for p, d in DENSITY_PER_CM.items()}
    return abs(DENSITY_PER_CM["pi"] - DENSITY_PER_CM["K"]) / ((sigma["pi"] + sigma["K"]) / 2)


def _track_dndx(cells: pd.DataFrame) -> np.ndarray:
    return track_dndx(cells["track_id"], cells["n_clusters"], cells["path_length_cm"]).to_numpy()


def test_poisson_tracks_give_the_analytic_separation_within_its_uncertainty() -> None:
    rng = np.random.default_rng(11)
    pi = _track_dndx(_poisson_tracks(rng, "pi", 400))
    kaon = _track_dndx(_poisson_tracks(rng, "K", 400))
    s = separation_power(pi, kaon)
    expected = _analytic_separation()
    assert abs(s.value - expected) < 3 * s.error
    # 400 tracks a side measure S to a few per cent.
    assert 0.01 * expected < s.error < 0.06 * expected


def test_stated_separation_uncertainty_matches_the_scatter_of_repeated_experiments() -> None:
    rng = np.random.default_rng(12)
    values, errors = [], []
    for _ in range(300):
        s = separation_power(
            _track_dndx(_poisson_tracks(rng, "pi", 40)), _track_dndx(_poisson_tracks(rng, "K", 40))
        )
        values.append(s.value)
        errors.append(s.error)
    scatter = float(np.std(values, ddof=1))
    assert np.mean(errors) == pytest.approx(scatter, rel=0.15)
    covered = np.mean(np.abs(np.array(values) - _analytic_separation()) < np.array(errors))
    assert 0.58 < covered < 0.78


def test_spread_of_gaussian_tracks_matches_the_known_mean_and_sigma() -> None:
    rng = np.random.default_rng(13)
    means, sigmas, resolutions = [], [], []
    for _ in range(300):
        s = spread(rng.normal(15.0, 0.5, 50))
        means.append((s.mean, s.mean_error))
        sigmas.append((s.sigma, s.sigma_error))
        resolutions.append((s.resolution, s.resolution_error))
    for (value, error), truth in zip(
        (means[0], sigmas[0], resolutions[0]), (15.0, 0.5, 0.5 / 15.0), strict=True
    ):
        assert abs(value - truth) < 3 * error
    for pairs in (means, sigmas, resolutions):
        value, error = np.array(pairs).T
        assert np.mean(error) == pytest.approx(np.std(value, ddof=1), rel=0.15)
    # For a Gaussian the deviation is known to 1/sqrt(2n) of itself.
    assert np.mean(np.array(sigmas)[:, 1]) == pytest.approx(0.5 / math.sqrt(2 * 50), rel=0.1)


def test_ratio_to_the_limit_of_a_noisier_method_matches_the_known_value() -> None:
    """A method that adds independent Gaussian noise to every track keeps the
    difference of the means and widens each set: S / S_ref is known."""
    rng = np.random.default_rng(14)
    sigma_a, sigma_b, noise = 0.40, 0.35, 0.30
    expected = (sigma_a + sigma_b) / (math.hypot(sigma_a, noise) + math.hypot(sigma_b, noise))
    ratios, errors = [], []
    for _ in range(300):
        truth_a, truth_b = rng.normal(14.0, sigma_a, 40), rng.normal(12.5, sigma_b, 40)
        method_a = truth_a + rng.normal(0.0, noise, 40)
        method_b = truth_b + rng.normal(0.0, noise, 40)
        r = separation_ratio(method_a, method_b, truth_a, truth_b)
        ratios.append(r.value)
        errors.append(r.error)
    assert abs(ratios[0] - expected) < 3 * errors[0]
    assert np.mean(ratios) == pytest.approx(expected, abs=0.01)
    assert np.mean(errors) == pytest.approx(np.std(ratios, ddof=1), rel=0.15)
    # Paired tracks share their fluctuations: the ratio is known better than
    # the method's S alone, let alone two independent S.
    s = separation_power(method_a, method_b)
    assert errors[-1] / ratios[-1] < s.error / s.value


def test_fewer_than_two_tracks_have_no_spread() -> None:
    with pytest.raises(ValueError, match="at least 2 tracks"):
        spread([1.0])


def test_truncated_mean_keeps_the_lowest_share_of_each_track() -> None:
    rng = np.random.default_rng(15)
    values = rng.permutation(np.arange(1.0, 101.0))
    track = np.zeros(100, dtype=np.int64)
    assert truncated_mean(track, values, 0.7).iloc[0] == pytest.approx(np.mean(np.arange(1, 71)))
    assert truncated_mean(track, values, 1.0).iloc[0] == pytest.approx(50.5)
    assert truncated_mean(track, values, 0.001).iloc[0] == 1.0
    with pytest.raises(ValueError, match="keep_fraction"):
        truncated_mean(track, values, 0.0)


def test_truncated_mean_of_a_long_tailed_charge_resolves_better_than_the_plain_mean() -> None:
    rng = np.random.default_rng(16)
    n_tracks = 200
    track = np.repeat(np.arange(n_tracks), N_CELLS)
    charge = 20.0 * (1.0 + rng.pareto(1.8, n_tracks * N_CELLS))  # a Landau-like tail
    truncated = spread(truncated_mean(track, charge, 0.7).to_numpy())
    plain = spread(truncated_mean(track, charge, 1.0).to_numpy())
    assert truncated.resolution + 3 * truncated.resolution_error < plain.resolution


def test_track_table_sums_counts_and_paths_per_track() -> None:
    cells = pd.DataFrame(
        {
            "track_id": [7, 5, 7, 5, 5],
            "particle": ["K", "pi", "K", "pi", "pi"],
            "momentum_gev": [5.0] * 5,
            "path_length_cm": [1.0, 0.5, 3.0, 0.5, 1.0],
            "n_clusters": [10, 4, 30, 6, 10],
            "cnn": [9.5, 4.0, 28.5, 6.0, 10.0],
            "charge": [10.0, 50.0, 60.0, 5.0, 20.0],
        }
    )
    table = track_table(cells, ["n_clusters", "cnn"], "charge", 0.5)
    assert table["track_id"].tolist() == [5, 7]
    assert table["particle"].tolist() == ["pi", "K"]
    assert table["n_cells"].tolist() == [3, 2]
    assert table["path_length_cm"].tolist() == [2.0, 4.0]
    assert table["n_clusters"].tolist() == [10.0, 10.0]
    assert table["cnn"].tolist() == [10.0, 9.5]
    # charge per cm: track 5 has 100, 10, 20 -> keeps 2 lowest; track 7 has 10, 20 -> keeps 1.
    assert table["charge"].tolist() == [15.0, 10.0]


def test_tables_cover_every_method_particle_momentum_and_pair() -> None:
    rng = np.random.default_rng(17)
    sets = [
        _poisson_tracks(rng, particle, 30).assign(
            momentum_gev=momentum, track_id=lambda c, i=index: c["track_id"] + 30 * i
        )
        for index, (particle, momentum) in enumerate(
            [("pi", 5.0), ("K", 5.0), ("pi", 10.0), ("K", 10.0), ("pi", 20.0)]
        )
    ]
    cells = pd.concat(sets, ignore_index=True)
    cells["noisy"] = cells["n_clusters"] + rng.normal(0.0, 6.0, len(cells))
    tracks = track_table(cells, ["n_clusters", "noisy"])
    resolution = resolution_table(tracks, ["n_clusters", "noisy"])
    assert len(resolution) == 2 * 5
    truth = resolution[resolution["method"] == "n_clusters"]
    expected = np.sqrt(truth["mean"] / (N_CELLS * PATH_CM)) / truth["mean"]
    assert np.all(np.abs(truth["resolution"] - expected) < 3 * truth["resolution_error"])
    separation = separation_table(tracks, ["n_clusters", "noisy"], "n_clusters", [("pi", "K")])
    # pi at 20 GeV/c has no kaon to be told from.
    assert separation["momentum_gev"].tolist() == [5.0, 10.0, 5.0, 10.0]
    limit = separation[separation["method"] == "n_clusters"]
    assert limit["ratio"].tolist() == [1.0, 1.0]
    noisy = separation[separation["method"] == "noisy"]
    assert np.all(noisy["ratio"] + 3 * noisy["ratio_error"] < 1.0)
    assert particle_pairs(["pi", "K", "mu"])[0] == ("pi", "K")


def test_track_metrics_nest_for_dvc_and_end_the_run_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.cli import _print_separation

    rng = np.random.default_rng(18)
    sets = [
        _poisson_tracks(rng, particle, 10).assign(
            momentum_gev=momentum, track_id=lambda c, i=index: c["track_id"] + 10 * i
        )
        for index, (particle, momentum) in enumerate(
            [("pi", 2.5), ("K", 2.5), ("pi", 10.0), ("K", 10.0)]
        )
    ]
    cells = pd.concat(sets, ignore_index=True).rename(columns={"n_clusters": TRUTH})
    for method in TRACK_METHODS[1:]:
        cells[method] = cells[TRUTH] + rng.normal(0.0, 3.0, len(cells))
    metrics = json.loads(json.dumps(evaluate_tracks(cells, 0.7).to_metrics()))
    assert metrics["n_tracks"] == 40 and metrics["n_cells"] == N_CELLS
    assert sorted(metrics["separation"]["pi_K"]) == ["10GeV", "2_5GeV"]
    assert sorted(metrics["resolution"]) == ["K", "pi"]
    limit = metrics["separation"]["pi_K"]["2_5GeV"][TRUTH]
    assert limit["ratio"] == 1.0 and limit["ratio_error"] == 0.0

    _print_separation(metrics, ("pi", "K"))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("π / K separation power S (S / S_Poisson) on 40 test tracks")
    assert lines[1].split() == ["p", "[GeV/c]", "2.5", "10"]
    assert lines[2].split()[:4] == ["true", "count", "(Poisson", "limit)"]
    assert lines[2].endswith("(1.00)")
    assert len(lines) == 2 + len(TRACK_METHODS)


def test_the_selection_ratio_averages_the_chosen_momenta_where_both_particles_have_tracks() -> None:
    # The method keeps half of the truth's difference at 5 GeV/c and all of it at 10;
    # 20 GeV/c is not chosen, and at 30 GeV/c the kaon has a single track.
    truth = {"pi": [9.0, 11.0, 9.0, 11.0], "K": [5.0, 7.0, 5.0, 7.0]}
    method = {5.0: {"pi": [9.0, 11.0, 9.0, 11.0], "K": [7.0, 9.0, 7.0, 9.0]}, 10.0: truth}
    method[20.0] = method[5.0]
    rows = []
    for momentum, counts in method.items():
        for particle in ("pi", "K"):
            for track, (n, n_true) in enumerate(
                zip(counts[particle], truth[particle], strict=True)
            ):
                rows.append((particle, momentum, track, n, n_true))
    rows += [("pi", 30.0, 0, 9.0, 9.0), ("pi", 30.0, 1, 11.0, 11.0), ("K", 30.0, 0, 5.0, 5.0)]
    cells = pd.DataFrame(rows, columns=["particle", "momentum_gev", "track", "counts", "truth"])
    cells["track_id"] = cells.groupby(["particle", "momentum_gev", "track"]).ngroup()
    cells["path_length_cm"] = 1.0
    assert selection_rows(
        cells["particle"], cells["momentum_gev"], ("pi", "K"), [30.0]
    ).tolist() == [24, 25, 26]

    ratio = mean_separation_ratio(cells, "counts", "truth", ("pi", "K"), [5.0, 10.0, 30.0])
    at_5_gev = separation_table(
        track_table(cells[cells["momentum_gev"] == 5.0], ["counts", "truth"]),
        ["counts"], "truth", [("pi", "K")],
    )  # fmt: skip
    assert ratio.value == pytest.approx((0.5 + 1.0) / 2)
    assert ratio.error == pytest.approx(at_5_gev["ratio_error"].iloc[0] / 2)
    unmeasured = mean_separation_ratio(cells, "counts", "truth", ("pi", "K"), [30.0, 50.0])
    assert math.isnan(unmeasured.value) and math.isnan(unmeasured.error)


def test_an_affine_count_keeps_its_scale_of_contrast_and_spread_and_all_the_separation() -> None:
    # Per cell 0.5 * truth + 3 over unit paths: every track's dN/dx is the same affine
    # map of the truth's, so both factors are 0.5 and their quotient, S / S_Poisson, 1.
    rng = np.random.default_rng(3)
    cells = pd.DataFrame(
        {
            "track_id": np.repeat(np.arange(40), 50),
            "particle": np.repeat(["pi", "K"], 1000),
            "momentum_gev": 10.0,
            "path_length_cm": 1.0,
        }
    )
    cells[TRUTH] = rng.poisson(np.repeat([14.0, 12.0], 1000))
    cells["cnn"] = 0.5 * cells[TRUTH] + 3.0
    cells["dedx"] = cells[TRUTH] * rng.gamma(1.5, 1.0, 2000)

    factors = evaluate_tracks(cells, 0.7, counts=[TRUTH, "cnn"]).pair_factors("pi", "K")

    by_method = factors.set_index("method")
    assert list(by_method.index) == [TRUTH, "cnn"]
    assert by_method.loc["cnn", ["contrast", "spread"]].tolist() == pytest.approx([0.5, 0.5])
    assert by_method.loc["cnn", "ratio"] == pytest.approx(1.0)
    assert by_method.loc[TRUTH, ["contrast", "spread"]].tolist() == pytest.approx([1.0, 1.0])
