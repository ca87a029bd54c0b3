"""The front-end fit (dndx.domain.fit) recovers known simulated settings from a
target's profile alone, and its result file round-trips."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from dndx.config import PARAMS_PATH, Range, load_params, parse_params
from dndx.domain.fit import Setting, TargetFit, apply_fit, fit_front_end, simulate_profile
from dndx.domain.profile import DomainProfile
from dndx.errors import ConfigError, InputError

PARAMS = load_params()
THRESHOLD = PARAMS.prepare.candidates.candidate_threshold_sigma
# Small but enough: 300 waveforms a candidate, 8 random starts, two passes.
FIT = dataclasses.replace(
    PARAMS.target.fit,
    n_waveforms=300,
    random_starts=8,
    rounds=2,
    candidates={
        "noise_correlation_time_ns": (Range(0.0, 0.0), Range(1.0, 3.0), Range(4.0, 8.0)),
        "fall_time_ns": (Range(2.5, 5.0), Range(7.5, 15.0), Range(15.0, 30.0)),
        "noise_fraction": (Range(0.03, 0.10), Range(0.08, 0.15), Range(0.15, 0.30)),
    },
)


def _profiles(settings: Sequence[Setting]) -> list[DomainProfile]:
    return [
        simulate_profile(
            apply_fit(PARAMS.simulate, setting),
            np.random.default_rng(FIT.seed),
            FIT.n_waveforms,
            PARAMS.domain,
            THRESHOLD,
        )
        for setting in settings
    ]


@pytest.mark.parametrize(
    "truth",
    [
        {"noise_correlation_time_ns": Range(1.0, 3.0)},
        {"fall_time_ns": Range(7.5, 15.0), "noise_fraction": Range(0.08, 0.15)},
    ],
    ids=["band-limited noise", "slow fall and low gain"],
)
def test_the_fit_recovers_the_settings_that_made_the_target(truth: dict[str, Range]) -> None:
    # The target: other tracks and electrons (another seed), twice as many waveforms.
    target = simulate_profile(
        apply_fit(PARAMS.simulate, truth), np.random.default_rng(99), 600, PARAMS.domain, THRESHOLD
    )
    setting, matched, trials = fit_front_end(target, PARAMS.simulate, FIT, PARAMS.domain, _profiles)
    # Tolerance: the very candidate that made the target, for every fitted field.
    expected = {name: truth.get(name, getattr(PARAMS.simulate, name)) for name in FIT.candidates}
    assert setting == expected
    assert trials[0].distance > 1.0 > min(t.distance for t in trials)
    assert matched.fall_time_ns == pytest.approx(target.fall_time_ns, rel=0.15)
    assert matched.noise_autocorrelation[0] == pytest.approx(
        target.noise_autocorrelation[0], abs=0.05
    )


def test_the_fit_file_round_trips_and_a_bad_one_names_itself(tmp_path: Path) -> None:
    fit = TargetFit.none("no target files (target.files is empty)")
    assert TargetFit.load(fit.save(tmp_path / "fit.json")) == fit
    assert apply_fit(PARAMS.simulate, fit.ranges) == PARAMS.simulate
    (tmp_path / "bad.json").write_text('{"files": 3}')
    with pytest.raises(InputError, match=r"bad.json: not a target fit: "):
        TargetFit.load(tmp_path / "bad.json")


def test_a_candidate_the_simulator_refuses_stops_at_the_params() -> None:
    mapping = yaml.safe_load(PARAMS_PATH.read_text())
    mapping["target"]["fit"]["candidates"]["fall_time_ns"] = [[0.5, 1.0]]
    with pytest.raises(
        ConfigError, match=r"target.fit.candidates.fall_time_ns\[0\] = \[0.5, 1.0\]"
    ):
        parse_params(mapping)
    mapping["target"]["fit"]["candidates"] = {"momentum_gev": [[1.0, 2.0]]}
    with pytest.raises(ConfigError, match=r"\['momentum_gev'\]: not fitted"):
        parse_params(mapping)
