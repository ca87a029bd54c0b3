"""`dndx data check` and `dndx data write` through the command line, on labelled files
written here with uproot and h5py as a third party would (the reader and writer
themselves: tests/unit/io/test_labelled.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dndx.io.labelled import LabelledLayout, summarise_file
from flows.cli import main
from tests.labelled_files import (
    MIN_SAMPLES,
    PEAKS,
    cepc_branches,
    random_cepc_branches,
    without_branch,
    write_tree,
)


def test_data_check_reports_and_fails_on_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_tree(tmp_path / "good.root", cepc_branches())
    assert main(["data", "check", str(good), "--layout", "cepc", "--particle", "K"]) == 0
    out = capsys.readouterr().out
    assert "4 waveforms (4 usable)" in out
    assert "tags 0/1/2: 1/8/4" in out
    assert "particles K" in out
    assert "mean ncls 2.00" in out
    bad = write_tree(tmp_path / "bad.root", without_branch(cepc_branches(), "ncls"))
    assert main(["data", "check", str(good), str(bad), "--layout", "cepc"]) == 2
    captured = capsys.readouterr()
    assert "first problem" in captured.out
    assert "names.n_clusters" in captured.out
    renamed = write_tree(tmp_path / "renamed.root", cepc_branches())
    summary = summarise_file(renamed, LabelledLayout("cepc", {"n_clusters": "mom"}), MIN_SAMPLES)
    assert "names.n_clusters" in summary.problem


@pytest.mark.parametrize("suffix", [".root", ".h5"])
def test_data_write_then_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    out = tmp_path / f"example{suffix}"
    assert main(["data", "write", str(out), "--layout", "cepc", "--waveforms", "20"]) == 0
    assert main(["data", "check", str(out), "--layout", "cepc"]) == 0
    assert "20 waveforms (20 usable)" in capsys.readouterr().out


def test_data_write_refuses_a_format_it_does_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "example.parquet"
    assert main(["data", "write", str(out), "--layout", "cepc", "--waveforms", "5"]) == 2
    assert f"{out}: labelled files are written as ROOT (.root) or HDF5" in capsys.readouterr().err
    assert not out.exists()


def _units(rng: np.random.Generator, time_unit: str, rate_unit: str) -> dict:
    """Waveforms at 1.5 GS/s whose peak times and sampling rate are stored in the units
    named."""
    branches = random_cepc_branches(rng, 12)
    if time_unit == "ns":
        branches["time"] = branches["time"] / 1.5
    if rate_unit == "ns_per_sample":
        branches["sampling_rate"] = 1.0 / branches["sampling_rate"]
    return branches


UNIT_CHECKS = [
    # (stored units, settings given, the reading data check names or None)
    (("samples", "ghz"), [], None),
    (("ns", "ghz"), [], ("ns", "ghz")),
    (("ns", "ghz"), ["--time-unit", "ns"], None),
    (("ns", "ns_per_sample"), ["--time-unit", "ns"], ("ns", "ns_per_sample")),
    (("ns", "ns_per_sample"), ["--time-unit", "ns", "--sampling-rate-unit", "ns_per_sample"], None),
    (("samples", "ns_per_sample"), ["--sampling-rate-unit", "ns_per_sample"], None),
]


@pytest.mark.parametrize(
    ("stored", "settings", "better"),
    UNIT_CHECKS,
    ids=[f"{'+'.join(c[0])} read with {' '.join(c[1]) or 'the defaults'}" for c in UNIT_CHECKS],
)
def test_data_check_names_the_unit_reading_the_pulses_fit(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    stored: tuple[str, str],
    settings: list[str],
    better: tuple[str, str] | None,
) -> None:
    path = write_tree(tmp_path / "units.root", _units(np.random.default_rng(7), *stored))
    status = main(["data", "check", str(path), "--layout", "cepc", *settings])
    out = capsys.readouterr().out
    if better is None:
        assert status == 0, out
        # The rate, in GHz whatever unit the file stores it in.
        assert "12 waveforms (12 usable)" in out and "sampling rates 1.5 GHz" in out
        assert "first problem" not in out
    else:
        assert status == 2, out
        (problem,) = [line for line in out.splitlines() if "first problem" in line]
        assert f"{path}: entries 0 on: the peaks tagged 1 or 2 do not sit on pulses" in problem
        assert f"with time_unit {better[0]!r} and sampling_rate_unit {better[1]!r} it is" in problem
        assert problem.endswith("check time_unit and sampling_rate_unit")


def test_data_check_refuses_peaks_on_noise_and_a_rate_outside_any_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every tagged peak 12 samples after its pulse, on the noise.
    shifted = cepc_branches(time=cepc_branches()["time"] + 12.0)
    on_noise = write_tree(tmp_path / "on_noise.root", shifted)
    assert main(["data", "check", str(on_noise), "--layout", "cepc"]) == 2
    out = capsys.readouterr().out
    assert "the peaks tagged 1 or 2 do not sit on pulses of the waveform when read with " in out
    # The settings' reading puts the peaks on the noise: below a pulse's 3 noise sigmas.
    height = re.search(r"'ghz' \(median height ([\d.]+) noise sigmas", out)
    assert height is not None and float(height.group(1)) < 3.0, out
    # A rate no unit setting makes a sampling rate (Hz): named, with the setting.
    in_hz = write_tree(
        tmp_path / "in_hz.root", cepc_branches(sampling_rate=np.full(len(PEAKS), 1.5e9))
    )
    assert main(["data", "check", str(in_hz), "--layout", "cepc"]) == 2
    out = capsys.readouterr().out
    assert f"{in_hz}: entry 0: sampling rate 1.5e+09 GHz read with sampling_rate_unit 'ghz'" in out
    assert "is outside 0.05-50.0 GHz; check sampling_rate_unit" in out
