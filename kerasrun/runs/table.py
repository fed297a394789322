"""Tables and numbers as every command shows them: one number format, plain columns for pipes, Rich tables for terminals.

TensorFlow-free, and Rich is imported only when a Rich table is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any


def format_number(value: Any, missing: str = "", keep_small: bool = False) -> str:
    """Four decimals for a metric value, `missing` for None, anything else as text.

    `keep_small` gives a nonzero value under 1e-3 four significant digits instead of `0.0000`.
    """
    if value is None:
        return missing
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    return f"{value:.4g}" if keep_small and value and abs(value) < 1e-3 else f"{value:.4f}"


def format_delta(value: float | None) -> str:
    """`+0.0123` / `-0.0040` (empty when unknown)."""
    return "" if value is None else f"{value:+.4f}"


def format_value(value: Any) -> str:
    """A config or environment value as one short line of text."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with two spaces between them, for pipes and files (no colours, no box drawing)."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def rich_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], column: Callable[[int, str], dict[str, Any]] | None = None, **options: Any
) -> Any:
    """A Rich table of text cells; `column(position, header)` gives a column's options (justify, overflow, …), `options` the table's."""
    from rich.table import Table

    table = Table(**options)
    for position, header in enumerate(headers):
        table.add_column(header, **(column(position, header) if column else {}))
    for row in rows:
        table.add_row(*row)
    return table
