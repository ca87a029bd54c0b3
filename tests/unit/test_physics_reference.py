"""docs/physics.md and the simulator's tables state the same numbers."""

from __future__ import annotations

import re

import numpy as np

from dndx.physics import (
    CLUSTER_DENSITY_BETA_GAMMA,
    CLUSTER_DENSITY_PER_CM,
    CLUSTER_SIZE_PROBABILITIES,
)
from dndx.scoring.metrics import LINEARITY_RANGE
from tests.conftest import ROOT

REFERENCE = (ROOT / "docs" / "physics.md").read_text()


def _table_row(first_cell: str) -> list[float]:
    """The numbers of the Markdown table row that starts with ``first_cell``."""
    for line in REFERENCE.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == first_cell:
            return [float(cell) for cell in cells[1:]]
    raise AssertionError(f"docs/physics.md has no table row {first_cell!r}")


def test_the_cluster_density_table_is_the_simulators() -> None:
    np.testing.assert_array_equal(_table_row("bg"), CLUSTER_DENSITY_BETA_GAMMA)
    np.testing.assert_array_equal(_table_row("cl/cm"), CLUSTER_DENSITY_PER_CM)


def test_the_measured_cluster_sizes_are_the_simulators() -> None:
    stated = re.search(r"P\(1\.\.10\) = ([\d., ]+) %", REFERENCE)
    assert stated is not None, "docs/physics.md states no P(1..10)"
    measured = np.array([float(value) for value in stated.group(1).split(",")]) / 100
    # The simulator renormalises after adding the tail, so the ratios are what must agree.
    np.testing.assert_allclose(
        CLUSTER_SIZE_PROBABILITIES[:10] / CLUSTER_SIZE_PROBABILITIES[0],
        measured / measured[0],
        rtol=1e-12,
    )
    assert len(CLUSTER_SIZE_PROBABILITIES) == int(re.findall(r"to n=(\d+)", REFERENCE)[0])


def test_the_linearity_range_is_the_references() -> None:
    low, high = LINEARITY_RANGE
    assert f"over N = {low}–{high}" in REFERENCE
