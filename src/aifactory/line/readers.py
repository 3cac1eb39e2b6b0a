"""Readers that turn a data file into (X, y), or raise SpecError("path", ...) saying what is wrong.

Formats, by suffix:
- `.csv`: numeric columns; an optional header row; the label is the column named
  `label`, `target` or `y` if there is one, else the last column.
- `.parquet`: the same rule for the label column; every other column is a feature.
- `.npz`: arrays `X` and `y` (or `data` and `target`).
- `.npy`: one 2-d array whose last column is the label.
"""

from __future__ import annotations

import csv
import zipfile
import zlib
from pathlib import Path

import numpy as np

from aifactory.core.errors import SpecError

LABEL_COLUMNS = ("label", "target", "y")


def read_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise SpecError("path", f"no such file: {path}")
    suffix = path.suffix.lower()
    readers = {".csv": _read_csv, ".parquet": _read_parquet, ".npz": _read_npz, ".npy": _read_npy}
    if suffix not in readers:
        raise SpecError("path", f"{path.name}: unsupported format {suffix!r} (use {', '.join(readers)})")
    return readers[suffix](path)


def _label_index(header: list[str]) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in LABEL_COLUMNS:
        if name in lowered:
            return lowered.index(name)
    return len(header) - 1


def _split(table: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    if table.ndim != 2 or table.shape[1] < 2:
        raise SpecError("path", f"need at least one feature column and a label column, got shape {table.shape}")
    return np.delete(table, label, axis=1), table[:, label]


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SpecError("path", f"{path.name}: not a readable CSV file ({exc})") from None
    if not rows:
        raise SpecError("path", f"{path.name}: empty file")
    header: list[str] | None = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = rows[0], rows[1:]
    width = len(header) if header is not None else len(rows[0]) if rows else 0
    values: list[list[float]] = []
    for i, row in enumerate(rows, start=2 if header is not None else 1):
        if len(row) != width:
            raise SpecError("path", f"{path.name}: line {i} has {len(row)} fields, expected {width} (truncated?)")
        try:
            values.append([float(v) for v in row])
        except ValueError:
            raise SpecError("path", f"{path.name}: line {i} has a value that is not a number") from None
    if not values:
        raise SpecError("path", f"{path.name}: no data rows")
    return _split(np.array(values), _label_index(header) if header is not None else width - 1)


def _read_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise SpecError("path", f"{path.name}: not a readable Parquet file ({exc})") from None
    names = list(table.column_names)
    try:
        columns = [np.asarray(table.column(n).to_numpy(), dtype=np.float64) for n in names]
    except (pa.ArrowException, ValueError, TypeError):
        raise SpecError("path", f"{path.name}: every column must be numeric") from None
    if not columns or len(columns[0]) == 0:
        raise SpecError("path", f"{path.name}: no data rows")
    return _split(np.column_stack(columns), _label_index(names))


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            xk, yk = ("X", "y") if {"X", "y"} <= keys else ("data", "target")
            if not {xk, yk} <= keys:
                raise SpecError("path", f"{path.name}: needs arrays 'X' and 'y' (has: {', '.join(sorted(keys))})")
            return data[xk], data[yk]
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
        raise SpecError("path", f"{path.name}: not a readable .npz file ({exc})") from None


def _read_npy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SpecError("path", f"{path.name}: not a readable .npy file ({exc})") from None
    return _split(table, table.shape[1] - 1 if table.ndim == 2 else 0)
