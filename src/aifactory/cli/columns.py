"""Plain aligned columns for long listings: `aifactory jobs` with 10,000 rows prints in
milliseconds, where a rich Table measures and renders every cell (seconds). Cells are user text
made printable; colour (one style per cell, e.g. a state) only on a terminal without NO_COLOR."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from aifactory.cli.text import printable

ANSI = {"yellow": "33", "cyan": "36", "magenta": "35", "green": "32", "red": "31", "dim": "2", "bold": "1"}


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: frozenset[str] = frozenset(),
    styles: Mapping[tuple[int, int], str] | None = None,
    color: bool | None = None,
) -> str:
    """The table as text: bold headers, columns two spaces apart, the last column unpadded.
    `styles` maps (row, column) to a colour name."""
    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    cells = [[printable(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(values: Sequence[str], row: int | None) -> str:
        out = []
        for i, value in enumerate(values):
            pad = widths[i] - len(value)
            text = value if i == last else (" " * pad + value if headers[i] in right else value + " " * pad)
            style = "bold" if row is None else (styles or {}).get((row, i))
            if color and style in ANSI:
                text = f"\033[{ANSI[style]}m{text}\033[0m"
            out.append(text)
        return "  ".join(out).rstrip()

    return "\n".join([line(headers, None), *(line(r, n) for n, r in enumerate(cells))])
