"""Domain profiles: what they recover of a known simulated front end, which files
they call in or outside the training domain, their files, and ``dndx data profile``
and ``dndx infer`` saying so.

A shifted front end is made here from simulated waveforms: an extra exponential
shaping stage (slower pulses) and band-limited noise (white noise through a
one-pole low-pass filter), drawn from a seeded generator.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.signal import lfilter

from dndx.chain.bundle import D2Settings, ModelBundle
from dndx.config import load_params
from dndx.domain.profile import (
    DOMAIN_FILE,
    DomainProfile,
    TrainingDomain,
    judge,
    profile_waveforms,
    shape_times,
)
from dndx.errors import InputError
from dndx.physics import pulse_peak_norm
from dndx.ragged import Ragged
from dndx.simulation.generator import simulate_range
from dndx.waveforms import WaveformSet
from flows.cli import main as cli
from flows.infer import _judge_domain, infer
from flows.infer_plan import InferenceRequest, plan_inference
from flows.runtime import ensure_prefect_api

PARAMS = load_params()
CFG = PARAMS.domain
THRESHOLD = PARAMS.prepare.candidate_threshold_sigma


def _simulate(n: int, seed: int, **settings: Any) -> WaveformSet:
    # Ranges given as (low, high) are validated into Range as in params.yaml.
    cfg = dataclasses.replace(
        PARAMS.simulate, seed=seed, n_train=n, block_size=100, chunk_size=100, **settings
    )
    return simulate_range(cfg, "train", 0, n)


def _profile(data: WaveformSet | Ragged, rates: np.ndarray | None = None) -> DomainProfile:
    if isinstance(data, WaveformSet):
        return profile_waveforms(
            data.adc, data.info["sampling_rate_ghz"].to_numpy(), CFG, THRESHOLD
        )
    assert rates is not None
    return profile_waveforms(data, rates, CFG, THRESHOLD)


def shifted(data: WaveformSet, rng: np.random.Generator, shaping_ns: float) -> Ragged:
    """``data`` through an extra exponential shaping stage of ``shaping_ns`` (its
    gain chosen to keep pulse heights alike), plus band-limited noise: white noise
    through a one-pole low-pass of 2 ns, of 8 % of the single-electron amplitude."""
    rows = []
    for i, row in enumerate(data.adc):
        rate = float(data.info["sampling_rate_ghz"][i])
        baseline = float(data.info["baseline_adc"][i])
        signal = row.astype(np.float64) - baseline
        kernel = np.exp(-np.arange(int(8 * shaping_ns * rate)) / (shaping_ns * rate))
        signal = np.convolve(signal, kernel / kernel.sum())[: len(signal)] * shaping_ns / 2
        decay = np.exp(-1 / (2.0 * rate))
        noise = lfilter([np.sqrt(1 - decay**2)], [1, -decay], rng.standard_normal(len(row)))
        sigma = 0.08 * float(data.info["single_electron_amplitude_adc"][i])
        rows.append(baseline + signal + sigma * noise)
    return Ragged.from_rows(rows, np.float64)


@pytest.fixture(scope="module")
def training() -> TrainingDomain:
    """The profile of waveforms drawn over every setting of the simulate section."""
    return TrainingDomain(_profile(_simulate(1000, seed=1)), CFG)


def test_the_profile_recovers_a_known_front_end() -> None:
    # Sparse waveforms (short chords, no diffusion) of one front end at one rate.
    rise_ns, fall_ns = 0.8, 4.0
    data = _simulate(
        600,
        seed=2,
        cell_half_width_cm=(0.05, 0.1),
        diffusion_sigma_at_5mm_ns=(0.0, 0.0),
        rise_time_ns=(rise_ns, rise_ns),
        fall_time_ns=(fall_ns, fall_ns),
        ion_tail_fraction=(0.0, 0.0),
        noise_fraction=(0.06, 0.06),
        sampling_rates_ghz=(1.5,),
        polarities=(-1,),
    )
    profile = _profile(data)
    # The single-electron response of the simulator, finely sampled.
    t = np.arange(0.0, 60.0, 0.01)
    response = pulse_peak_norm(rise_ns, fall_ns) * (np.exp(-t / fall_ns) - np.exp(-t / rise_ns))
    true_rise, true_fall, _ = shape_times(t, response, 60.0)
    assert true_rise is not None and true_fall is not None
    assert profile.n_pulses >= CFG.min_pulses
    # The fall within 20 %; the rise, spanning two samples at 1.5 GS/s, within one sample.
    assert profile.fall_time_ns == pytest.approx(true_fall, rel=0.2)
    assert profile.rise_time_ns == pytest.approx(true_rise, abs=1 / 1.5)
    assert profile.noise_sigma == pytest.approx(
        float(np.median(data.info["noise_sigma_adc"])), rel=0.05
    )
    assert profile.noise_excess == pytest.approx(1.0, abs=0.05)
    assert all(abs(rho) < 0.05 for rho in profile.noise_autocorrelation if rho is not None)
    assert all(v is not None and 0.8 < v < 1.2 for v in profile.noise_spectrum[1:16])
    # Polarity is read off each row: a few sparse rows, one small pulse on a
    # wandering baseline, read the wander's side.
    assert profile.positive_fraction < 0.15
    assert profile.sampling_rates_ghz == (1.5,)


@pytest.mark.parametrize(
    "settings",
    [
        {"sampling_rates_ghz": (1.2,)},
        {"sampling_rates_ghz": (2.0,)},
        {"rise_time_ns": (0.6, 0.6), "fall_time_ns": (2.5, 2.5), "sampling_rates_ghz": (2.0,)},
        {"rise_time_ns": (1.1, 1.1), "fall_time_ns": (5.0, 5.0), "sampling_rates_ghz": (1.2,)},
        {"noise_fraction": (0.03, 0.03), "baseline_wander_fraction": (0.05, 0.05)},
        {"noise_fraction": (0.1, 0.1), "single_electron_amplitude_adc": (40.0, 40.0)},
        {"ion_tail_fraction": (0.05, 0.05), "ion_tail_time_ns": (200.0, 200.0)},
        {"polarities": (1,)},
    ],
    ids=["1.2GS", "2GS", "fast", "slow", "quiet+wander", "noisy+low-gain", "ion-tail", "positive"],
)
def test_files_of_the_training_simulator_at_any_setting_are_in(
    training: TrainingDomain, settings: dict[str, object]
) -> None:
    verdict = judge(_profile(_simulate(500, seed=3, **settings)), training)
    assert verdict.verdict == "in", verdict


def test_slower_shaping_or_band_limited_noise_is_outside(training: TrainingDomain) -> None:
    data = _simulate(500, seed=4)
    rates = data.info["sampling_rate_ghz"].to_numpy()
    verdict = judge(_profile(shifted(data, np.random.default_rng(5), 6.0), rates), training)
    assert verdict.verdict == "outside"
    outside = {d.quantity for d in verdict.differences if d.outside}
    assert "noise_autocorrelation_1ns" in outside
    # Three times the simulator's slowest fall, white noise: the pulse shape alone.
    slow = judge(_profile(_simulate(500, seed=4, fall_time_ns=(15.0, 15.0))), training)
    assert slow.verdict == "outside"
    assert {d.quantity for d in slow.differences if d.outside} >= {"fall_time_ns"}
    fall = next(d for d in slow.differences if d.quantity == "fall_time_ns")
    assert fall.change is not None and fall.change > 2.0
    # The simulator's own band-limited noise (benchmarks/domain.py's `noise` domain).
    noisy = judge(_profile(_simulate(500, seed=4, noise_correlation_time_ns=(1.0, 3.0))), training)
    assert "noise_autocorrelation_1ns" in {d.quantity for d in noisy.differences if d.outside}


def test_the_training_domain_round_trips_and_a_damaged_one_is_named(
    training: TrainingDomain, tmp_path: Path
) -> None:
    path = training.save(tmp_path)
    assert path.name == DOMAIN_FILE
    assert TrainingDomain.load(tmp_path) == training
    assert TrainingDomain.load(tmp_path / "none") is None
    raw = json.loads(path.read_text())
    del raw["profile"]["fall_time_ns"]
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=rf"{DOMAIN_FILE}: not a TrainingDomain: profile"):
        TrainingDomain.load(tmp_path)
    path.write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        TrainingDomain.load(tmp_path)


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[str]:
    """One Prefect server for the module's flow runs, as the CLI sets up."""
    before = os.environ.get("PREFECT_API_URL")
    yield ensure_prefect_api()
    if before is None:
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="module")
def domain_bundle(
    untrained_pair: Path, training: TrainingDomain, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The untrained pair's bundle with a training domain, as the register stage writes it."""
    bundle = Path(shutil.copytree(untrained_pair / "bundle", tmp_path_factory.mktemp("b") / "b"))
    training.save(bundle)
    d2 = D2Settings(t1_sigma=3.0, t2=1.5, window_ns=2.0, growth_ns_per_sqrt_ns=0.1)
    dataclasses.replace(ModelBundle.load(bundle), d2=d2).save(bundle)
    return bundle


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A training-like and a shifted NPZ file at 1.5 GS/s, and an empty one."""
    root = tmp_path_factory.mktemp("files")
    data = _simulate(300, seed=6, sampling_rates_ghz=(1.5,))
    rates = data.info["sampling_rate_ghz"].to_numpy()
    paths = {name: root / f"{name}.npz" for name in ("like", "shifted", "empty")}
    np.savez(paths["like"], waveforms=np.stack(list(data.adc)))
    np.savez(
        paths["shifted"],
        waveforms=np.stack(list(shifted(data, np.random.default_rng(7), 6.0))),
    )
    np.savez(paths["empty"], waveforms=np.zeros((0, 100)))
    assert rates.tolist() == [1.5] * 300
    return paths


def test_data_profile_writes_json_markdown_and_figure_and_refuses_bad_input(
    domain_bundle: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "profile" / "shifted.json"
    args = [str(files["shifted"]), "--json", str(out), "--model-uri", str(domain_bundle)]
    assert cli(["data", "profile", *args, "--sampling-rate-ghz", "1.5"]) == 0
    assert "domain: outside: " in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["domain"]["verdict"] == "outside"
    assert DomainProfile.from_dict(record["profile"], out).n_waveforms == 300
    assert record["training"] is not None
    markdown = out.with_suffix(".md").read_text()
    assert "| quantity | input | training |" in markdown and "**outside: " in markdown
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"

    # An existing output, a missing file, a file without waveforms, a bad rate: one
    # line each, exit 2, nothing written.
    for bad, problem in (
        ([str(files["like"]), "--json", str(out)], "exist(s); pass --overwrite"),
        ([str(tmp_path / "missing.npz"), "--json", str(tmp_path / "m.json")], "no such file"),
        ([str(files["empty"]), "--json", str(tmp_path / "e.json")], "no usable waveforms"),
        (
            [str(files["like"]), "--json", str(tmp_path / "r.json"), "--sampling-rate-ghz", "0"],
            "--sampling-rate-ghz 0.0: expected a positive",
        ),
    ):
        assert cli(["data", "profile", *bad]) == 2
        error = capsys.readouterr().err
        assert error.startswith("dndx: error: ") and problem in error
        assert error.count("\n") == 1
    assert not any((tmp_path / name).exists() for name in ("m.json", "e.json", "r.json"))
    assert json.loads(out.read_text()) == record

    # Without models: profiled, not judged.
    like = tmp_path / "like.json"
    assert cli(["data", "profile", str(files["like"]), "--json", str(like)]) == 0
    assert json.loads(like.read_text())["domain"]["verdict"] == "not judged"


def test_infer_writes_each_files_verdict_in_its_summaries(
    domain_bundle: Path,
    untrained_pair: Path,
    files: dict[str, Path],
    prefect_api: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run.parquet"
    inputs = [str(files["like"]), str(files["shifted"])]
    common = ["--sampling-rate-ghz", "1.5", "--workers", "1", "--chunk-size", "300"]
    assert (
        cli(["infer", *inputs, "--out", str(out), "--model-uri", str(domain_bundle), *common]) == 0
    )
    printed = capsys.readouterr().out
    assert f"training domain: {files['like']}: in: " in printed
    assert f"training domain: {files['shifted']}: outside: " in printed
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    verdicts = {entry["file"]: entry["verdict"] for entry in summary["domain"]}
    assert verdicts == {str(files["like"]): "in", str(files["shifted"]): "outside"}
    markdown = (tmp_path / "run.summary.md").read_text()
    assert "## Training domain" in markdown
    assert f"{files['shifted']} is outside the models' training domain" in markdown

    # A bundle registered before the training domain was stored still runs: unknown.
    old = tmp_path / "old.parquet"
    bundle = str(untrained_pair / "bundle")
    report = infer(inputs[:1], str(old), sampling_rate_ghz=1.5, model_uris=[bundle], workers=1)
    assert report.domain == (
        f"{inputs[0]}: unknown: the models hold no training domain (registered before dndx "
        "stored one): the domain cannot be judged",
    )
    summary = json.loads((tmp_path / "old.summary.json").read_text())
    assert [entry["verdict"] for entry in summary["domain"]] == ["unknown"]


def test_the_classical_chain_is_not_judged(
    domain_bundle: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    plan = plan_inference(
        InferenceRequest(
            (str(files["like"]),),
            str(tmp_path / "d2.parquet"),
            sampling_rate_ghz=1.5,
            model_uris=(str(domain_bundle),),
            method="d2",
        )
    )
    [(name, verdict)] = _judge_domain(plan)
    assert name == str(files["like"]) and verdict.verdict == "not judged"
    assert "--method d2 runs no trained model" in verdict.reason
