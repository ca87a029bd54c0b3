"""params.yaml, dvc.yaml and the config dataclasses agree; bad values stop early."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from dndx.config import Params, load_params, parse_params
from dndx.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_keys_equal_dataclass_fields() -> None:
    mapping = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(mapping) == {f.name for f in dataclasses.fields(Params)}
    params = load_params(ROOT / "params.yaml")
    for section, values in mapping.items():
        fields = {f.name for f in dataclasses.fields(getattr(params, section))}
        assert set(values) == fields, section


def test_dvc_params_are_config_sections() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    sections = {f.name for f in dataclasses.fields(Params)}
    for name, stage in stages.items():
        for entry in stage.get("params", []):
            keys = entry if isinstance(entry, str) else next(iter(entry.values()))
            for key in [keys] if isinstance(keys, str) else keys:
                assert key.split(".")[0] in sections, (name, key)
        assert stage["cmd"] == f"python -m flows.{name}"
        assert (ROOT / "flows" / f"{name}.py").exists()


def test_defaults_equal_params_yaml() -> None:
    assert load_params(ROOT / "params.yaml") == Params()


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"simulate": {"n_train": "many"}}, "simulate.n_train = 'many': expected a number"),
        ({"simulate": {"n_train": 2.5}}, "simulate.n_train = 2.5: expected an integer"),
        ({"simulate": {"noise_fraction": [0.1, 1.5]}}, "noise_fraction[1] = 1.5 is out of range"),
        ({"simulate": {"sampling_rates_ghz": [3.0]}}, "expected one of [1.2, 1.5, 2.0]"),
        ({"simulate": {"momentum_gev": 5}}, "simulate.momentum_gev = 5: expected [low, high]"),
        ({"simulate": {"chunk_size": 70, "block_size": 30}}, "must be a multiple of"),
        ({"prepare": {"window_before": -1}}, "prepare.window_before = -1 is out of range"),
        ({"prepare": {"colour": "red"}}, "prepare: unknown key(s) ['colour']"),
        ({"dask": {"mode": "cloud"}}, "dask.mode = 'cloud' is not allowed"),
    ],
)
def test_bad_values_name_key_value_and_allowed(mapping: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_params(mapping, "my-params.yaml")
    assert str(error.value).startswith("my-params.yaml: ")
    assert message in str(error.value)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("simulate: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
