"""Plain aligned columns for long listings: `aifactory jobs` with 10,000 rows prints in
milliseconds, where a rich Table measures and renders every cell (seconds). Cells are user text
made printable; colour (one style per cell, e.g. a state) only on a terminal without NO_COLOR."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence

from aifactory.cli.text import printable

ANSI = {"yellow": "33", "cyan": "36", "magenta": "35", "green": "32", "red": "31", "dim": "2", "bold": "1"}


MIN_CUT = 6  # a column cut to fit is never narrower than this (or its header)


def terminal_width() -> int | None:
    """The width to fit: $COLUMNS, else the terminal's; None when piped (a file keeps whole lines)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def gpu_ranges(placement: str) -> str:
    """`node0:0,1,2,3,5` as `node0:0-3,5` (a placement as `show` and the API give it)."""
    out = []
    for part in placement.split(" "):
        node, _, rest = part.rpartition(":")
        idx, at, frac = rest.partition("@")
        if not node or not all(i.isdigit() for i in idx.split(",")):
            out.append(part)
            continue
        nums = [int(i) for i in idx.split(",")]
        runs: list[list[int]] = []
        for n in nums:
            if runs and n == runs[-1][-1] + 1:
                runs[-1].append(n)
            else:
                runs.append([n])
        text = ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)
        out.append(f"{node}:{text}{at}{frac}")
    return " ".join(out)


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: frozenset[str] = frozenset(),
    styles: Mapping[tuple[int, int], str] | None = None,
    color: bool | None = None,
    width: int | None = None,
    shrink: Sequence[str] = (),
) -> str:
    """The table as text: bold headers, columns two spaces apart, the last column unpadded.
    `styles` maps (row, column) to a colour name. With `width`, the `shrink` columns (in that
    order) are cut, their text ending in `…`, until the table fits."""
    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    cells = [[printable(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    last = len(headers) - 1
    if width is not None:
        over = sum(widths) + 2 * last - width
        for name in shrink:
            if over <= 0 or name not in headers:
                continue
            i = headers.index(name)
            floor = max(MIN_CUT, len(name))
            take = min(over, max(0, widths[i] - floor))
            if take:
                widths[i] -= take
                over -= take
                for r in cells:
                    if len(r[i]) > widths[i]:
                        r[i] = r[i][: widths[i] - 1] + "…"

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
