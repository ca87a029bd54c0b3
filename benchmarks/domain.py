"""How the models fare on front ends they were not trained on: shifted domains.

Each domain is the simulator with some of its front-end ranges changed
(:data:`DOMAINS`): a slower pulse and a shaping stage, band-limited (AR(1))
noise, a lower gain against the noise with wider gain fluctuations, all of
them together, and the nominal front end for reference. Every domain is written
as *labelled* files in the dndx layout through the project's writer (a tuning
file of the validation split, a test file of the test split), read back through
the labelled reader as a user's files would be, and scored per waveform:

- ``source_only``: the registered pair (an ONNX bundle, ``--model-uri``) as
  trained, through ONNX Runtime (:func:`dndx.scoring.bundle_scores.score_bundle`);
- ``d2_source``: the D2 chain with the settings the bundle carries (tuned on the
  training domain's validation split);
- ``d2_retuned``: the D2 chain with its thresholds and clusterization window
  tuned on the domain's labelled tuning file, as the evaluation tunes them on
  the training domain's validation split (:mod:`dndx.chain.baselines`).

Beside the per-waveform figures, each method's π/K separation at 10 GeV/c on
tracks of the domain (``--n-tracks`` of each particle, the ``tracks`` section's
cells with the domain's front end, simulated in memory), S / S_Poisson with its
error (:func:`dndx.scoring.separation.mean_separation_ratio`).

The front-end draws come from a child stream (``dndx.simulation.generator``), so every
domain holds the same tracks and electrons; only the gain domain's Polya shape
draws other gains. The adaptation methods and the oracle (issue 19, items 4-6)
are not measured yet: their places in the JSON are empty, not estimated.

    python -m benchmarks.domain OUT_DIR [--model-uri data/bundle] [--n-waveforms 2000]
        [--n-tune 1000] [--n-tracks 40]

Writes ``benchmarks/results/domain.json`` and ``benchmarks/results/domain.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from benchmarks.machine import cpu_model
from dndx.chain.baselines import d2_peaks, time_clusterize
from dndx.chain.bundle import D2Settings, ModelBundle
from dndx.chain.preprocessing import normalise
from dndx.config import Params, Range, SimulationConfig, load_params
from dndx.errors import InputError
from dndx.io.labelled import LabelledLayout, count_entries, read_labelled
from dndx.io.labelled_writer import write_labelled
from dndx.ragged import Ragged
from dndx.reporting.tables import markdown_table
from dndx.scoring.bundle_scores import score_bundle, score_separation
from dndx.scoring.evaluation import align_by_id, evaluate_counting, evaluate_peaks
from dndx.scoring.promotion import SEPARATION
from dndx.scoring.separation import mean_separation_ratio
from dndx.scoring.tuning import tune_d2, tune_time_clusterization
from dndx.simulation.generator import simulate_range
from dndx.simulation.tracks import simulate_tracks, track_sets
from dndx.truth.preparation import prepare_waveforms
from dndx.waveforms import WaveformSet

RESULTS = Path(__file__).parent / "results"

_SHAPING = {"fall_time_ns": Range(7.5, 15.0), "shaping_time_ns": Range(2.0, 4.0)}
_NOISE = {"noise_correlation_time_ns": Range(1.0, 3.0)}
_GAIN = {
    "single_electron_amplitude_adc": Range(15.0, 40.0),
    "noise_fraction": Range(0.08, 0.15),
    "polya_shape": 1.0,
}

#: Domain name -> the ``simulate`` fields it changes.
DOMAINS: dict[str, dict[str, Any]] = {
    "nominal": {},
    "shaping": _SHAPING,
    "noise": _NOISE,
    "gain": _GAIN,
    "combined": {**_SHAPING, **_NOISE, **_GAIN},
}

#: The pair and momentum of the separation on each domain's tracks.
PAIR: tuple[str, str] = ("pi", "K")
MOMENTUM_GEV = 10.0

#: The figures of each method, as :func:`dndx.scoring.bundle_scores.score_bundle` names them.
FIGURES: tuple[str, ...] = (
    "relative_bias",
    "rms_over_sqrt_n",
    "peak_efficiency_x_purity",
    "peak_efficiency",
    "peak_purity",
)


def domain_config(
    simulate: SimulationConfig, name: str, n_tune: int, n_test: int
) -> SimulationConfig:
    """The simulator of domain ``name``: ``n_tune`` validation and ``n_test`` test waveforms."""
    return dataclasses.replace(
        simulate,
        n_validation=n_tune,
        n_test=n_test,
        chunk_size=simulate.block_size,
        **DOMAINS[name],
    )


def write_domain(cfg: SimulationConfig, directory: Path) -> dict[str, Path]:
    """The domain's tuning (validation) and test waveforms as labelled dndx-layout files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, split in (("tune", "validation"), ("test", "test")):
        paths[role] = directory / f"{role}.h5"
        write_labelled(simulate_range(cfg, split, 0, cfg.n_waveforms(split)), paths[role], "dndx")
    return paths


def read_domain_file(path: Path, params: Params) -> tuple[WaveformSet, pd.DataFrame]:
    """A labelled file read back as a user's would be, and its prepared truth per
    waveform, in the file's order."""
    layout = LabelledLayout("dndx")
    chunk = read_labelled(
        path, layout, 0, count_entries(path, layout), params.prepare.candidates.window_length
    )
    data = chunk.data
    truth = prepare_waveforms(data, params.prepare).waveforms
    ids = data.info["waveform_id"].to_numpy()
    order = align_by_id(np.arange(len(truth)), truth["waveform_id"].to_numpy(), ids, str(path))
    return data, truth.iloc[order].reset_index(drop=True)


def _normalised(data: WaveformSet, params: Params) -> tuple[np.ndarray, np.ndarray]:
    norm = normalise(
        data.adc,
        data.info["sampling_rate_ghz"].to_numpy(),
        params.prepare.candidates.model_sampling_rate_ghz,
    )
    return norm.samples, norm.lengths


def _expected_samples(truth: pd.DataFrame, rate_ghz: float) -> Ragged:
    return Ragged.from_rows(
        [np.asarray(t) * rate_ghz for t in truth["expected_time_ns"]], np.float64
    )


def retune_d2(tune: tuple[WaveformSet, pd.DataFrame], params: Params) -> D2Settings:
    """The D2 chain's settings tuned on a domain's labelled ``tune`` file, as the
    evaluation tunes them on the training domain's validation split."""
    rate = params.prepare.candidates.model_sampling_rate_ghz
    grids = params.evaluate
    samples, lengths = _normalised(tune[0], params)
    d2 = tune_d2(
        samples,
        lengths,
        _expected_samples(tune[1], rate),
        params.prepare.match_tolerance_samples,
        grids.d2_t1_grid_sigma,
        grids.d2_t2_grid,
    )
    peaks = d2_peaks(samples, lengths, d2.t1_sigma, d2.t2)
    window = tune_time_clusterization(
        Ragged(peaks.values / rate, peaks.offsets),
        tune[1]["n_clusters"].to_numpy(),
        grids.window_grid_ns,
        grids.growth_grid,
    )
    return D2Settings(d2.t1_sigma, d2.t2, window.window_ns, window.growth_ns_per_sqrt_ns)


def _d2_peak_samples(data: WaveformSet, settings: D2Settings, params: Params) -> Ragged:
    samples, lengths = _normalised(data, params)
    return d2_peaks(samples, lengths, settings.t1_sigma, settings.t2)


def _clusterize(peak_samples: Ragged, settings: D2Settings, rate_ghz: float) -> NDArray[np.int64]:
    return time_clusterize(
        Ragged(peak_samples.values / rate_ghz, peak_samples.offsets),
        settings.window_ns,
        settings.growth_ns_per_sqrt_ns,
    ).lengths


def d2_scores(
    test: tuple[WaveformSet, pd.DataFrame], settings: D2Settings, params: Params
) -> dict[str, float]:
    """:data:`FIGURES` of the D2 chain with ``settings`` on ``test``."""
    rate = params.prepare.candidates.model_sampling_rate_ghz
    grids = params.evaluate
    data, truth = test
    peaks = _d2_peak_samples(data, settings, params)
    found = evaluate_peaks(
        peaks,
        _expected_samples(truth, rate),
        np.concatenate([np.asarray(t) for t in truth["expected_drift_time_ns"]]),
        truth["noise_fraction"].to_numpy(),
        sampling_rate_ghz=rate,
        tolerance_samples=params.prepare.match_tolerance_samples,
        drift_time_edges_ns=grids.drift_time_edges_ns,
        noise_fraction_edges=grids.noise_fraction_edges,
    )
    counting = evaluate_counting(
        _clusterize(peaks, settings, rate),
        truth["n_clusters"].to_numpy(),
        truth["particle"].to_numpy(),
        truth["momentum_gev"].to_numpy(),
        grids.momentum_edges_gev,
    )
    scores = {
        "relative_bias": counting.scores["relative_bias"],
        "rms_over_sqrt_n": counting.scores["rms_over_sqrt_n"],
        "peak_efficiency_x_purity": found.scores["efficiency_x_purity"],
        "peak_efficiency": found.scores["efficiency"],
        "peak_purity": found.scores["purity"],
    }
    return {k: round(float(v), 4) for k, v in scores.items()}


def domain_tracks(cfg: SimulationConfig, params: Params, n_tracks: int) -> WaveformSet:
    """``n_tracks`` test tracks of each particle of :data:`PAIR` at :data:`MOMENTUM_GEV`,
    the ``tracks`` section's cells with the domain's front end."""
    tracks = dataclasses.replace(
        params.tracks, particles=PAIR, momenta_gev=(MOMENTUM_GEV,), n_test=n_tracks
    )
    return WaveformSet.concatenate(
        [
            simulate_tracks(cfg, tracks, "test", track_set, 0, n_tracks)
            for track_set in track_sets(tracks, "test")
        ]
    )


def separation(
    tracks: WaveformSet, model_dir: Path, d2: dict[str, D2Settings], params: Params
) -> dict[str, dict[str, float]]:
    """S / S_Poisson of :data:`PAIR` at :data:`MOMENTUM_GEV` on ``tracks`` and its
    error, by method: the champion (ONNX Runtime) and the D2 chain with each of ``d2``."""
    counter = dataclasses.replace(
        params.train_cluster_counter, separation_pair=PAIR, separation_momenta_gev=(MOMENTUM_GEV,)
    )
    champion = score_separation(model_dir, tracks, counter)
    nan = float("nan")  # too few tracks: no separation measured
    ratios = {
        "source_only": (champion.get(SEPARATION, nan), champion.get(f"{SEPARATION}_error", nan))
    }
    cells = tracks.info[["track_id", "particle", "momentum_gev", "path_length_cm"]].assign(
        truth=tracks.info["n_clusters"].to_numpy()
    )
    rate = params.prepare.candidates.model_sampling_rate_ghz
    for method, settings in d2.items():
        cells[method] = _clusterize(_d2_peak_samples(tracks, settings, params), settings, rate)
        ratio = mean_separation_ratio(cells, method, "truth", PAIR, (MOMENTUM_GEV,))
        ratios[method] = (ratio.value, ratio.error)
    return {
        method: {"separation_ratio": round(value, 3), "separation_ratio_error": round(error, 3)}
        for method, (value, error) in ratios.items()
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Range):
        return [value.low, value.high]
    return value


def measure(
    out_dir: Path, model_dir: Path, n_test: int, n_tune: int, n_tracks: int
) -> dict[str, Any]:
    """Write every domain under ``out_dir`` and score the bundle in ``model_dir`` and
    the D2 chain, as tuned on the training domain and re-tuned, on each."""
    params = load_params()
    source_d2 = ModelBundle.load(model_dir).d2
    if source_d2 is None:
        raise InputError(f"{model_dir}: the bundle holds no D2 settings; register it anew")
    domains = {}
    for name in DOMAINS:
        started = time.perf_counter()
        cfg = domain_config(params.simulate, name, n_tune, n_test)
        paths = write_domain(cfg, out_dir / name)
        tune, test = (read_domain_file(paths[role], params) for role in ("tune", "test"))
        champion = score_bundle(model_dir, test[0], test[1], params)
        retuned = retune_d2(tune, params)
        d2 = {"d2_source": source_d2, "d2_retuned": retuned}
        per_waveform = {
            "source_only": {k: round(float(champion[k]), 4) for k in FIGURES},
            **{method: d2_scores(test, settings, params) for method, settings in d2.items()},
        }
        tracks = separation(domain_tracks(cfg, params, n_tracks), model_dir, d2, params)
        domains[name] = {
            "simulate": {key: _jsonable(value) for key, value in DOMAINS[name].items()},
            "files": {role: str(path) for role, path in paths.items()},
            "n_test": len(test[0]),
            "mean_n_clusters": round(float(test[1]["n_clusters"].mean()), 2),
            "d2_retuned_settings": dataclasses.asdict(retuned),
            "methods": {
                method: {**figures, **tracks[method]} for method, figures in per_waveform.items()
            },
            # Issue 19, items 4-6: measured when the adaptation stages exist.
            "adapted": {},
            "oracle": None,
        }
        print(f"{name}: {time.perf_counter() - started:.0f} s", json.dumps(domains[name]))
    return {
        "model_uri": str(model_dir),
        "n_test_waveforms": n_test,
        "n_tune_waveforms": n_tune,
        "n_tracks": n_tracks,
        "separation": f"{PAIR[0]}/{PAIR[1]} at {MOMENTUM_GEV} GeV/c",
        "seed": params.simulate.seed,
        "domains": domains,
        "cpu": cpu_model(),
    }


#: The methods of the table, in its order, and how it names them.
METHODS: dict[str, str] = {
    "source_only": "champion, source-only",
    "d2_source": "D2, tuned on the training domain",
    "d2_retuned": "D2, re-tuned on the domain",
}


def markdown(result: dict[str, Any]) -> str:
    """What each domain changes, then one row per domain and method."""
    definitions = [
        [name, ", ".join(f"`{k}` {v}" for k, v in domain["simulate"].items()) or "the defaults"]
        for name, domain in result["domains"].items()
    ]
    rows = []
    for name, domain in result["domains"].items():
        for method, label in METHODS.items():
            figures = domain["methods"][method]
            rows.append(
                [
                    name,
                    label,
                    f"{figures['relative_bias']:+.1%}",
                    f"{figures['rms_over_sqrt_n']:.2f}",
                    f"{figures['peak_efficiency_x_purity']:.3f}",
                    f"{figures['peak_efficiency']:.3f}",
                    f"{figures['peak_purity']:.3f}",
                    f"{figures['separation_ratio']:.2f} ± {figures['separation_ratio_error']:.2f}",
                ]
            )
    header = ["domain", "method", "count bias", "RMS / √N", "peak eff × purity", "eff", "purity"]
    header.append(f"{result['separation']}: S / S_Poisson")
    return (
        f"Shifted front ends (`python -m benchmarks.domain`): {result['n_test_waveforms']} "
        f"labelled test waveforms a domain; D2 re-tuned on {result['n_tune_waveforms']} "
        f"labelled waveforms of the domain; {result['n_tracks']} tracks of each particle for "
        f"the separation; champion `{result['model_uri']}`. The adaptation "
        "methods and the oracle are not measured yet.\n\n"
        + markdown_table(["domain", "simulate ranges changed"], definitions)
        + "\n\n"
        + markdown_table(header, rows)
        + "\n"
    )


def main() -> None:
    """Parse the command line, measure, write the results files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where the labelled domain files are written")
    parser.add_argument("--model-uri", type=Path, default=Path("data/bundle"), help="ONNX bundle")
    parser.add_argument("--n-waveforms", type=int, default=2000, help="test waveforms a domain")
    parser.add_argument("--n-tune", type=int, default=1000, help="D2 tuning waveforms a domain")
    parser.add_argument("--n-tracks", type=int, default=40, help="tracks a particle and domain")
    args = parser.parse_args()
    result = measure(args.out_dir, args.model_uri, args.n_waveforms, args.n_tune, args.n_tracks)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / "domain"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
