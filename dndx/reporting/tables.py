"""Markdown tables and the number formats every report and summary shares."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["MISSING", "format_estimate", "format_number", "format_percent", "markdown_table"]


#: What a table shows for a missing figure.
MISSING = "–"


def format_number(value: float | None, digits: int = 3) -> str:
    """A figure with ``digits`` decimals; a dash when it is missing.

    >>> format_number(0.91234), format_number(float("nan")), format_number(12, 0)
    ('0.912', '–', '12')
    """
    if value is None or not math.isfinite(float(value)):
        return MISSING
    return f"{float(value):.{digits}f}"


def format_percent(value: float | None, digits: int = 1) -> str:
    """A fraction as a signed percentage.

    >>> format_percent(-0.0123), format_percent(0.02)
    ('-1.2 %', '+2.0 %')
    """
    if value is None or not math.isfinite(float(value)):
        return MISSING
    return f"{100 * float(value):+.{digits}f} %"


def format_estimate(value: float | None, error: float | None, digits: int = 2) -> str:
    """A figure with its uncertainty.

    >>> format_estimate(7.1234, 0.456), format_estimate(float("nan"), 0.1)
    ('7.12 ± 0.46', '–')
    """
    if value is None or not math.isfinite(float(value)):
        return MISSING
    return f"{format_number(value, digits)} ± {format_number(error, digits)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; text columns left-aligned, the others right-aligned.

    A column is text when its first row's entry does not start like a number.
    A ``|`` inside a cell is escaped.

    >>> print(markdown_table(["method", "F1"], [["LSTM", "0.950"], ["D2", "0.870"]]))
    | method | F1 |
    |:--|--:|
    | LSTM | 0.950 |
    | D2 | 0.870 |
    """
    first = rows[0] if rows else [""] * len(header)
    align = ["--:" if _looks_numeric(cell) else ":--" for cell in first]
    lines = [
        _markdown_row(header),
        "|" + "|".join(align) + "|",
        *(_markdown_row(row) for row in rows),
    ]
    return "\n".join(lines)


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _looks_numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or (cell[0] in "+-–" and len(cell) > 1))
