"""Tables that fit the terminal.

A table is drawn when every column can get at least a readable width (its header, and its
longest word up to a cap); columns with nothing in them are dropped first. When even that does
not fit, each record is printed as ``key: value`` lines, one record after the other. Never a
fixed width: the console's width is the terminal's, or ``COLUMNS`` (80 when unset) when piped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import attrs

DEFAULT_WIDTH = 80
WORD_CAP = 14  # a long word may be folded past this many characters rather than widen its column


@attrs.frozen
class Col:
    """A column: its header, and whether its values must stay on one line (short values only)."""

    header: str
    no_wrap: bool = False


def output_width(environ: Any = None) -> int | None:
    """The width for output that is not a terminal: ``COLUMNS`` when it is a number, else 80.
    ``None`` for a terminal (rich measures it)."""
    import sys

    if sys.stdout.isatty():
        return None
    value = (environ if environ is not None else os.environ).get("COLUMNS", "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else DEFAULT_WIDTH


def make_console(**kwargs: Any) -> Any:
    """A rich console as wide as the terminal, or as ``COLUMNS`` (80 by default) when piped."""
    from rich.console import Console

    return Console(width=output_width(), **kwargs)


def _words(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


def _lines(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def column_widths(cols: Sequence[Col], rows: Sequence[Sequence[str]], available: int) -> list[int] | None:
    """Widths for ``cols`` summing to at most ``available`` (the table's content width), or
    ``None`` when some column would get less than its readable minimum."""
    minimum, words, wanted = [], [], []
    for i, col in enumerate(cols):
        values = [row[i] for row in rows]
        longest = max((_lines(v) for v in values), default=0)
        floor = longest if col.no_wrap else min(max((_words(v) for v in values), default=0), WORD_CAP)
        minimum.append(max(len(col.header), floor))
        words.append(max(len(col.header), max((_words(v) for v in values), default=0), floor))
        wanted.append(max(len(col.header), longest))
    if sum(minimum) > available:
        return None
    widths = list(minimum)
    spare = available - sum(widths)
    for i in sorted(range(len(cols)), key=lambda i: words[i] - widths[i]):  # whole words first, if they fit
        grow = words[i] - widths[i]
        if 0 < grow <= spare:
            widths[i] += grow
            spare -= grow
    while spare > 0:  # give the next character to the column that misses the most
        short = [(wanted[i] - widths[i], i) for i in range(len(cols)) if widths[i] < wanted[i]]
        if not short:
            break
        _, i = max(short)
        widths[i] += 1
        spare -= 1
    return widths


def print_records(console: Any, title: str, cols: Sequence[Col], rows: Sequence[Sequence[str]],
                  *, show_lines: bool = True) -> None:
    """Print ``rows`` under ``cols`` as a table that fits ``console.width``, or stacked."""
    from rich.table import Table
    from rich.text import Text

    keep = [i for i, col in enumerate(cols) if any(row[i] for row in rows)] or list(range(len(cols)))
    cols = [cols[i] for i in keep]
    rows = [[row[i] for i in keep] for row in rows]
    overhead = 3 * len(cols) + 1  # a border between and around columns, one space of padding each side
    widths = column_widths(cols, rows, console.width - overhead)
    if widths is not None:
        table = Table(title=title, show_lines=show_lines)
        for col, width in zip(cols, widths, strict=True):
            table.add_column(col.header, width=width, overflow="fold", no_wrap=col.no_wrap)
        for row in rows:
            table.add_row(*(Text(value) for value in row))
        console.print(table)
        return
    console.print(Text(title, style="bold"))
    label = max(len(col.header) for col in cols)
    for number, row in enumerate(rows):
        if number:
            console.print()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=label + 1, style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for col, value in zip(cols, row, strict=True):
            if value:
                grid.add_row(col.header + ":", Text(value))
        console.print(grid)


__all__ = ["Col", "column_widths", "make_console", "output_width", "print_records"]
