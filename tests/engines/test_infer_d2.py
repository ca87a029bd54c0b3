"""``dndx infer --method d2``: the classical chain through the same readers,
chunks and writer, giving the D2 baseline's own counts, per waveform and, with
``--track-column`` and ``--path-column``, per track."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from dndx.chain.baselines import d2_peaks, time_clusterize
from dndx.chain.bundle import D2Settings, ModelBundle
from dndx.chain.inference import RESULT_SCHEMA
from dndx.chain.preprocessing import normalise
from dndx.config import load_params
from dndx.errors import InputError
from dndx.ragged import Ragged
from dndx.simulation.generator import simulate_range
from flows.cli import main as cli
from flows.infer_plan import InferenceRequest, plan_inference

N_WAVEFORMS = 60
RATE_GHZ = 1.2
SETTINGS = D2Settings(t1_sigma=3.0, t2=1.0, window_ns=1.5, growth_ns_per_sqrt_ns=0.2)
TRACKS = np.repeat([30, 10, 20], N_WAVEFORMS // 3)
PATHS_CM = np.linspace(0.6, 1.4, N_WAVEFORMS)


@pytest.fixture(scope="module")
def waveforms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ragged]:
    """60 simulated waveforms at 1.2 GS/s in an HDF5 file, and the same rows; the
    file also holds their tracks (``track``, 3 of 20 cells) and path lengths
    (``path_cm``)."""
    cfg = dataclasses.replace(
        load_params().simulate,
        n_train=N_WAVEFORMS,
        block_size=30,
        chunk_size=N_WAVEFORMS,
        sampling_rates_ghz=(RATE_GHZ,),
    )
    adc = simulate_range(cfg, "train", 0, N_WAVEFORMS).adc
    path = tmp_path_factory.mktemp("d2") / "waveforms.h5"
    with h5py.File(path, "w") as file:
        file["adc"] = adc.values.reshape(N_WAVEFORMS, -1)
        file["track"] = TRACKS
        file["path_cm"] = PATHS_CM
    return path, adc


def _bundle_with(untrained_pair: Path, directory: Path, d2: D2Settings | None) -> Path:
    shutil.copytree(untrained_pair / "bundle", directory)
    dataclasses.replace(ModelBundle.load(directory), d2=d2).save(directory)
    return directory


def test_d2_method_gives_the_d2_baselines_counts_and_sums_them_per_track(
    untrained_pair: Path,
    waveforms: tuple[Path, Ragged],
    shared_dask: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, adc = waveforms
    bundle_dir = _bundle_with(untrained_pair, tmp_path / "bundle", SETTINGS)
    out = tmp_path / "d2.parquet"

    # As the README shows it; chunks of 25 cut through the tracks of 20 cells.
    argv = [str(path), "--dataset", "adc", "--sampling-rate-ghz", str(RATE_GHZ)]
    argv += ["--model-uri", str(bundle_dir), "--workers", "1", "--chunk-size", "25"]
    argv += ["--method", "d2", "--track-column", "track", "--path-column", "path_cm"]
    assert cli(["infer", *argv, "--out", str(out)]) == 0

    results = pd.read_parquet(out)
    assert len(results) == N_WAVEFORMS
    assert list(results.columns) == [*RESULT_SCHEMA.names, "track", "path_cm"]
    norm = normalise(adc, RATE_GHZ, ModelBundle.load(bundle_dir).candidates.model_sampling_rate_ghz)
    peaks = d2_peaks(norm.samples, norm.lengths, SETTINGS.t1_sigma, SETTINGS.t2)
    clusters = time_clusterize(
        Ragged(peaks.values / norm.sampling_rate_ghz, peaks.offsets),
        SETTINGS.window_ns,
        SETTINGS.growth_ns_per_sqrt_ns,
    )
    ok = (results["status"] == "ok").to_numpy()
    assert ok.sum() > N_WAVEFORMS // 2
    np.testing.assert_array_equal(results["n_peaks"], peaks.lengths)
    np.testing.assert_array_equal(results["n_clusters"][ok], clusters.lengths[ok])
    assert results["n_clusters"][~ok].isna().all()

    np.testing.assert_array_equal(results["track"], TRACKS)
    np.testing.assert_allclose(results["path_cm"], PATHS_CM)
    tracks = pd.read_parquet(tmp_path / "d2.tracks.parquet")
    assert f"3 tracks -> {tmp_path / 'd2.tracks.parquet'}" in capsys.readouterr().out
    assert tracks["track"].tolist() == [10, 20, 30]
    assert tracks["n_cells"].tolist() == [20, 20, 20]
    for row in tracks.itertuples():
        cells = (row.track == TRACKS) & ok
        assert row.n_counted == cells.sum() > 0
        assert row.n_clusters == pytest.approx(clusters.lengths[cells].sum())
        assert row.path_cm == pytest.approx(PATHS_CM[cells].sum())
        assert row.dndx_per_cm == pytest.approx(row.n_clusters / row.path_cm)
    summary = (tmp_path / "d2.summary.md").read_text()
    assert "3 tracks, 60 cells" in summary
    assert f"| dN/dx (clusters per cm) | 3 | {tracks['dndx_per_cm'].mean():.2f} |" in summary


def test_a_bundle_without_d2_settings_is_refused_before_any_work(
    untrained_pair: Path, waveforms: tuple[Path, Ragged], tmp_path: Path
) -> None:
    bundle_dir = _bundle_with(untrained_pair, tmp_path / "bundle", None)
    out = tmp_path / "d2.parquet"
    with pytest.raises(InputError, match=rf"{bundle_dir}: the bundle holds no D2 settings"):
        plan_inference(
            InferenceRequest(
                (str(waveforms[0]),),
                str(out),
                sampling_rate_ghz=RATE_GHZ,
                model_uris=(str(bundle_dir),),
                method="d2",
            )
        )
    assert not out.exists()
