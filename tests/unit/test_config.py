"""params.yaml is the one source of configuration: it agrees with dvc.yaml, holds
every key the models ask for, and a bad file stops early with the key named."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dndx.config import (
    PARAMS_PATH,
    PROJECT_ROOT,
    DaskConfig,
    Params,
    load_params,
    load_section,
    parse_params,
)
from dndx.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _edited(path: str, value: Any) -> dict[str, Any]:
    """``params.yaml``'s mapping with the key at dotted ``path`` set to ``value``
    (deleted where ``value`` is ``...``)."""
    mapping = copy.deepcopy(PARAMS)
    *parents, key = path.split(".")
    section = mapping
    for name in parents:
        section = section[name]
    if value is ...:
        del section[key]
    else:
        section[key] = value
    return mapping


def _error(mapping: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as error:
        parse_params(mapping, "my-params.yaml")
    return str(error.value)


def test_the_default_params_are_the_projects_whatever_the_working_directory(
    tmp_path: Path,
) -> None:
    assert PROJECT_ROOT == ROOT and (PROJECT_ROOT / "dvc.yaml").exists()
    assert PARAMS_PATH == ROOT / "params.yaml"
    # Another params.yaml in the working directory must not be read.
    (tmp_path / "params.yaml").write_text("simulate: {}\n")
    code = "from dndx.config import load_params; print(load_params().simulate.n_train)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(PARAMS["simulate"]["n_train"])


def test_params_yaml_parses_into_every_section_and_key() -> None:
    params = load_params(ROOT / "params.yaml")
    assert list(PARAMS) == [f.name for f in dataclasses.fields(Params)]
    for section, values in PARAMS.items():
        assert list(values) == [f.name for f in dataclasses.fields(getattr(params, section))]
    assert params.simulate.noise_fraction.low == PARAMS["simulate"]["noise_fraction"][0]
    assert params.evaluate.growth_grid == tuple(PARAMS["evaluate"]["growth_grid"])
    space = PARAMS["train_peak_finder"]["scan"]["space"]["lstm_units"]
    assert params.train_peak_finder.scan.space["lstm_units"] == tuple(map(tuple, space))


def test_dvc_params_are_keys_of_params_yaml() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for entry in stage.get("params", []):
            keys = entry if isinstance(entry, str) else next(iter(entry.values()))
            for key in [keys] if isinstance(keys, str) else keys:
                value: Any = PARAMS
                for part in key.split("."):
                    assert isinstance(value, dict) and part in value, (name, key)
                    value = value[part]
        assert stage["cmd"] == f"python -m flows.{name}"
        assert (ROOT / "flows" / f"{name}.py").exists()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("colour", {"red": 1}, "colour: unknown key; allowed keys are ['simulate', 'prepare'"),
        ("prepare.colour", "red", "prepare.colour: unknown key; allowed keys are"),
        ("train_peak_finder.scan.speed", 1, "train_peak_finder.scan.speed: unknown key"),
    ],
)
def test_unknown_keys_are_named(path: str, value: Any, message: str) -> None:
    assert message in _error(_edited(path, value))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("simulate.n_train", "many", "simulate.n_train = 'many': should be a valid integer"),
        ("simulate.n_train", 2.5, "simulate.n_train = 2.5: should be a valid integer"),
        ("simulate.n_train", True, "simulate.n_train = True: should be a valid integer"),
        ("simulate.window_ns", "long", "simulate.window_ns = 'long': should be a valid number"),
        ("simulate.momentum_gev", 5, "simulate.momentum_gev = 5: should be [low, high]"),
        ("prepare", [1], "prepare = [1]: should be a mapping of keys"),
        ("dask.mode", "cloud", "dask.mode = 'cloud': should be 'local', 'address'"),
        ("cluster_counter.output", "bins", "output = 'bins': should be 'total' or 'per_bin'"),
        (
            "train_cluster_counter.target_weighting",
            "inverse",
            "target_weighting = 'inverse': should be 'none' or 'flat'",
        ),
        ("train_cluster_counter.calibrate", "yes", "calibrate = 'yes': should be a valid boolean"),
    ],
)
def test_wrong_types_name_key_value_and_allowed(path: str, value: Any, message: str) -> None:
    assert message in _error(_edited(path, value))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "simulate.noise_fraction",
            [0.1, 1.5],
            "simulate.noise_fraction = [0.1, 1.5]: should be [low, high] within [0.0, 1.0]",
        ),
        (
            "simulate.noise_fraction",
            [0.08, 0.04],
            "simulate.noise_fraction = [0.08, 0.04]: should be [low, high] with low <= high",
        ),
        (
            "simulate.shaping_time_ns",
            [-1.0, 5.0],
            "simulate.shaping_time_ns = [-1.0, 5.0]: should be [low, high] within [0.0, 100.0]",
        ),
        (
            "simulate.shaping_time_ns",
            [9.0, 3.0],
            "simulate.shaping_time_ns = [9.0, 3.0]: should be [low, high] with low <= high",
        ),
        (
            "simulate.noise_correlation_time_ns",
            [0.0, 250.0],
            "simulate.noise_correlation_time_ns = [0.0, 250.0]: should be [low, high] within",
        ),
        (
            "simulate.noise_correlation_time_ns",
            [2.0],
            "simulate.noise_correlation_time_ns = [2.0]: should be [low, high]",
        ),
        (
            "simulate.sampling_rates_ghz",
            [1.5, 3.0],
            "simulate.sampling_rates_ghz[1] = 3.0: should be one of [1.2, 1.5, 2.0]",
        ),
        ("simulate.polarities", [], "simulate.polarities = []: should be a non-empty list"),
        (
            "prepare.candidates.window_before",
            -1,
            "prepare.candidates.window_before = -1: should be greater than or equal to 0",
        ),
        ("simulate.window_ns", float("inf"), "simulate.window_ns = inf: should be a finite"),
        ("simulate.chunk_size", 2600, "simulate: chunk_size = 2600 should be a multiple of"),
        ("evaluate.momentum_edges_gev", [1, 5, 2], "strictly increasing bin edges"),
        ("dask.walltime", "4h", "dask.walltime = '4h': should be [D-]HH:MM:SS"),
        ("dask.minimum_jobs", 9, "dask: minimum_jobs = 9 exceeds maximum_jobs = 4"),
        (
            "train_peak_finder.selection",
            ["val_f1", "val_f2"],
            "train_peak_finder.selection[1] = 'val_f2': should be one of ['val_efficiency",
        ),
        (
            "train_cluster_counter.cost_tolerance",
            -0.01,
            "train_cluster_counter.cost_tolerance = -0.01: should be greater than or equal to 0",
        ),
        (
            "train_peak_finder.scan.space",
            {"lstm_units": [[8], [8, 0]]},
            "train_peak_finder: scan.space.lstm_units[1][1] = 0: should be greater than or equal",
        ),
        (
            "train_cluster_counter.scan.space",
            {"filter": [[8]]},
            "train_cluster_counter: scan.space.filter: not a key of cluster_counter; keys are",
        ),
        (
            "train_cluster_counter.separation_pair",
            ["pi", "pi"],
            "train_cluster_counter.separation_pair = ['pi', 'pi']: should list each value once",
        ),
        (
            "train_cluster_counter.separation_pair",
            ["pi", "d"],
            "train_cluster_counter.separation_pair[1] = 'd': should be one of ['e', 'mu'",
        ),
        (
            "train_cluster_counter.separation_momenta_gev",
            [],
            "train_cluster_counter.separation_momenta_gev = []: should be a non-empty list",
        ),
        (
            "train_cluster_counter.separation_momenta_gev",
            [10.0, 12.5],
            "my-params.yaml: train_cluster_counter.separation_momenta_gev = [10.0, 12.5]: "
            "[12.5] not in tracks.momenta_gev [2.0, 5.0,",
        ),
    ],
)
def test_values_out_of_range_name_key_value_and_allowed(
    path: str, value: Any, message: str
) -> None:
    assert message in _error(_edited(path, value))


def test_the_separation_pair_must_be_among_the_simulated_tracks_not_the_imported() -> None:
    mapping = _edited("train_cluster_counter.separation_pair", ["pi", "p"])
    mapping["tracks"]["particles"] = ["pi", "K"]
    assert _error(mapping) == (
        "my-params.yaml: train_cluster_counter.separation_pair = ['pi', 'p']: ['p'] not in "
        "tracks.particles ['pi', 'K']"
    )
    # Imported files bring the tracks' particles and momenta: nothing to compare with.
    mapping["data"].update(source="files", files=["*.root"])
    assert parse_params(mapping).train_cluster_counter.separation_pair == ("pi", "p")


def test_missing_keys_are_named_one_line_each() -> None:
    mapping = _edited("simulate.n_test", ...)
    del mapping["register"]
    lines = _error(mapping).splitlines()
    assert lines == [
        "my-params.yaml: 2 problems:",
        "  simulate.n_test: missing; every key must be given",
        "  register: missing; every key must be given",
    ]


def test_a_valid_file_is_frozen_and_checked_again_on_replace() -> None:
    params = parse_params(_edited("simulate.n_train", 10))
    assert params.simulate.n_train == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.simulate.n_train = 11  # type: ignore[misc]
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        dataclasses.replace(params.simulate, n_train=0)


def test_scan_values_take_the_models_types() -> None:
    space = {"learning_rate": [1, 0.5], "dense_units": [[16, 8]]}
    params = parse_params(_edited("train_peak_finder.scan.space", space))
    assert params.train_peak_finder.scan.space == {
        "learning_rate": (1.0, 0.5),
        "dense_units": ((16, 8),),
    }
    assert isinstance(params.train_peak_finder.scan.space["learning_rate"][0], float)


@pytest.mark.parametrize("name", ["local", "address", "htcondor", "slurm"])
def test_a_section_alone_is_validated_with_its_key_path(name: str, tmp_path: Path) -> None:
    example = ROOT / "infra" / "dask" / f"{name}.yaml"
    assert load_section(example, "dask", DaskConfig).mode == name
    broken = yaml.safe_load(example.read_text())
    broken["dask"]["cores"] = 0
    (tmp_path / "dask.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(ConfigError, match=r"dask\.yaml: dask\.cores = 0: should be greater"):
        load_section(tmp_path / "dask.yaml", "dask", DaskConfig)
    with pytest.raises(ConfigError, match="no section 'simulate'"):
        load_section(example, "simulate", DaskConfig)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("simulate: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- simulate\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: top level = \['simulate'\]: should be"):
        load_params(tmp_path / "list.yaml")
