"""The target section: bad target input stops in one line naming the file and the
problem, before Prefect starts and without writing anything; no target changes
nothing and costs no cluster."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dndx.config import TargetConfig, load_params
from dndx.domain.fit import TargetFit, adapted_params
from dndx.domain.target import target_sources
from dndx.errors import InputError
from dndx.io.labelled_writer import write_labelled
from dndx.paths import TARGET_FIT_PATH
from dndx.simulation.generator import simulate_range

PARAMS = load_params()


def _write_target(directory: Path, rate_ghz: float = 1.5, n: int = 20) -> Path:
    """``n`` simulated waveforms at one rate, in the dndx layout (HDF5), as a beam test's."""
    cfg = dataclasses.replace(
        PARAMS.simulate, n_train=n, block_size=n, chunk_size=n, sampling_rates_ghz=(rate_ghz,)
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_labelled(simulate_range(cfg, "train", 0, n), directory / "run1.h5", "dndx")
    return directory / "run1.h5"


def _target(directory: Path, **changes: Any) -> TargetConfig:
    return dataclasses.replace(
        PARAMS.target, **{"root": str(directory), "files": ("*.h5",), **changes}
    )


def test_good_target_files_resolve_with_their_rate_column(tmp_path: Path) -> None:
    _write_target(tmp_path / "beam")
    (source,) = target_sources(_target(tmp_path / "beam"), Path("."))
    assert source.dataset == "dndx/adc" and source.rate_column == "dndx/sampling_rate_ghz"


#: (case, what the target section changes, what the error says). ``{d}``: the test's directory.
BAD_TARGETS = [
    ("root missing", {"root": "{d}/nowhere"}, r"target.root .*/nowhere: not a directory"),
    ("glob matches nothing", {"files": ("*.root",)}, r"target.files '\*.root': matches no file"),
    (
        "rate contradicted",
        {"sampling_rate_ghz": 2.0},
        r"run1.h5: sampling-rate column 'dndx/sampling_rate_ghz' holds 1.5 GS/s, which "
        r"contradicts target.sampling_rate_ghz 2",
    ),
    (
        "option of no file's format",
        {"tree": "events"},
        r"target.tree 'events': applies to root files, and no target file is one \(hdf5\)",
    ),
    ("no waveforms", {"files": ("empty.npz",)}, r"empty.npz: holds no waveforms; a target file"),
    ("not a waveform file", {"files": ("notes.parquet",)}, r"notes.parquet: "),
]


@pytest.mark.parametrize(("case", "changes", "message"), BAD_TARGETS)
def test_bad_target_input_names_the_file_and_the_problem(
    tmp_path: Path, case: str, changes: dict[str, object], message: str
) -> None:
    beam = tmp_path / "beam"
    _write_target(beam)
    np.savez(beam / "empty.npz", waveforms=np.zeros((0, 100)))
    (beam / "notes.parquet").write_text("not a parquet file\n")
    changes = {k: v.format(d=tmp_path) if isinstance(v, str) else v for k, v in changes.items()}
    with pytest.raises(InputError, match=message) as error:
        target_sources(_target(beam, **changes), Path("."))
    assert "\n" not in str(error.value), case


def test_the_stage_stops_in_one_line_before_prefect_and_writes_nothing(project: Path) -> None:
    _write_target(project / "examples/target")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["target"] |= {"files": ["*.h5"], "sampling_rate_ghz": 1.2}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "flows.profile"], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"dndx: error: {project}/examples/target/run1.h5: "
        "sampling-rate column 'dndx/sampling_rate_ghz' "
        "holds 1.5 GS/s, which contradicts target.sampling_rate_ghz 1.2"
    )
    assert "Beginning flow run" not in result.stderr + result.stdout
    assert not (project / "data").exists()


def test_without_target_files_the_stage_writes_no_target_and_simulate_reads_nothing(
    project: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flows.profile"], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "Dask" not in result.stderr + result.stdout
    fit = TargetFit.load(project / TARGET_FIT_PATH)
    assert fit == TargetFit.none("no target files (target.files is empty)")
    assert json.loads((project / TARGET_FIT_PATH).read_text())["setting"] == {}
    assert "No target" in (project / TARGET_FIT_PATH.with_suffix(".md")).read_text()
    # The simulation is the simulate section's: the fit is not even read.
    assert adapted_params(PARAMS, tmp_missing := project / "no-such-fit.json") is PARAMS
    assert not tmp_missing.exists()
