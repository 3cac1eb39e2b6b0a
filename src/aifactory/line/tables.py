"""Tables of any shape: their schema, reading them from files, and checking data against a schema.

A table dataset version is an Arrow table with a `TableSchema`: named, typed columns, the
target column(s) a model learns (none for unlabelled data) and the task (classification,
regression or none). Every check raises `SpecError` naming the column, row or file, so bad
data never becomes a version.

Files, by suffix: `.csv` (a header row names the columns; without one they are `c0..`),
`.parquet`, `.npz` (arrays `X` and `y`, or `data` and `target`), `.npy` (a 2-d array whose last
column is the target). The target defaults to a column named `target`, `label` or `y`.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from aifactory.core.errors import SpecError

ColumnType = Literal["float", "int", "bool", "string"]
Task = Literal["classification", "regression", "none"]
TARGET_NAMES = ("target", "label", "y")
NUMERIC: tuple[ColumnType, ...] = ("float", "int", "bool")
MAX_CLASSES = 10_000  # an integer target with more distinct values than this is taken for regression


class Column(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    type: ColumnType
    nullable: bool = False  # whether a missing value (or NaN) is allowed


class TableSchema(BaseModel):
    """A table's columns, which of them are the target, and what learning it is for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[Column] = Field(min_length=1)
    target: list[str] = Field(default_factory=list)
    task: Task = "none"
    classes: list[int] | None = None  # classification: the labels seen (sorted)

    @property
    def features(self) -> list[Column]:
        return [c for c in self.columns if c.name not in self.target]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise SpecError("column", f"no column {name!r} (columns: {', '.join(c.name for c in self.columns)})")


def arrow_type(kind: ColumnType) -> pa.DataType:
    return {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "string": pa.string()}[kind]


def column_type(name: str, dtype: pa.DataType) -> ColumnType:
    if pa.types.is_floating(dtype):
        return "float"
    if pa.types.is_integer(dtype):
        return "int"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    raise SpecError(name, f"column {name!r} has type {dtype}, which a dataset cannot hold (float, int, bool, string)")


def infer_schema(table: pa.Table, target: list[str] | None = None, task: Task | None = None) -> TableSchema:
    """The schema of `table`: target named or found by name, task from the target's type."""
    names = list(table.column_names)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SpecError(dup, f"column {dup!r} appears twice")
    if target is None:
        found = [n for n in names if n.strip().lower() in TARGET_NAMES]
        target = found[:1]
    for t in target:
        if t not in names:
            raise SpecError("target", f"no column {t!r} (columns: {', '.join(names)})")
    columns = [Column(name=n, type=column_type(n, table.schema.field(n).type)) for n in names]
    if task is None:
        task = _guess_task(table, target)
    classes = None
    if task == "classification":
        if len(target) != 1:
            raise SpecError("target", f"classification needs exactly one target column, got {len(target)}")
        col = target[0]
        kind = column_type(col, table.schema.field(col).type)
        values = table.column(col).to_numpy(zero_copy_only=False)
        if kind == "float" and not np.all(np.isfinite(values) & (values == np.round(values))):
            raise SpecError(col, f"classification labels in column {col!r} must be whole numbers")
        if kind == "string":
            raise SpecError(col, f"classification labels in column {col!r} must be integers, not text")
        classes = sorted({int(v) for v in values})
    if task == "regression":
        for t in target:
            if column_type(t, table.schema.field(t).type) == "string":
                raise SpecError(t, f"regression target {t!r} must be numeric")
    if task != "none" and not target:
        raise SpecError("target", f"a {task} dataset needs a target column")
    return TableSchema(columns=columns, target=list(target), task=task, classes=classes)


def _guess_task(table: pa.Table, target: list[str]) -> Task:
    if not target:
        return "none"
    if len(target) > 1:
        return "regression"
    dtype = table.schema.field(target[0]).type
    if pa.types.is_integer(dtype) or pa.types.is_boolean(dtype):
        distinct = len(set(table.column(target[0]).to_pylist()))
        return "classification" if distinct <= MAX_CLASSES else "regression"
    if pa.types.is_floating(dtype):
        values = table.column(target[0]).to_numpy(zero_copy_only=False)
        whole = bool(np.all(np.isfinite(values) & (values == np.round(values))))
        return "classification" if whole and len(np.unique(values)) <= 100 else "regression"
    return "classification"


def conform(table: pa.Table, schema: TableSchema, where: str = "data") -> pa.Table:
    """`table` with exactly the schema's columns, in its order and types; SpecError naming what differs."""
    names = set(table.column_names)
    missing = [c.name for c in schema.columns if c.name not in names]
    if missing:
        raise SpecError(missing[0], f"{where}: column {missing[0]!r} is missing (schema: {_names(schema)})")
    extra = [n for n in table.column_names if n not in {c.name for c in schema.columns}]
    if extra:
        raise SpecError(extra[0], f"{where}: column {extra[0]!r} is not in the schema ({_names(schema)})")
    arrays = []
    for c in schema.columns:
        arr = table.column(c.name)
        have = column_type(c.name, arr.type)
        widened = c.type == "float" and have in ("int", "bool")
        whole = c.type == "int" and have == "float" and _whole(arr)
        if have != c.type and not widened and not whole:
            raise SpecError(c.name, f"{where}: column {c.name!r} is {have}, the schema says {c.type}")
        arr = arr.cast(arrow_type(c.type))
        _check_values(c, arr, where)
        arrays.append(arr)
    return pa.table(arrays, names=[c.name for c in schema.columns])


def _whole(arr: pa.ChunkedArray) -> bool:
    values = arr.to_numpy(zero_copy_only=False)
    return bool(np.all(np.isfinite(values) & (values == np.round(values))))


def _check_values(c: Column, arr: pa.ChunkedArray, where: str) -> None:
    if c.nullable:
        return
    if arr.null_count:
        row = next(i for i, v in enumerate(arr.to_pylist()) if v is None)
        raise SpecError(c.name, f"{where}: column {c.name!r} has a missing value at row {row}")
    if c.type == "float":
        values = arr.to_numpy(zero_copy_only=False)
        bad = ~np.isfinite(values)
        if bad.any():
            raise SpecError(c.name, f"{where}: column {c.name!r} has NaN or infinity at row {int(np.argmax(bad))}")


def _names(schema: TableSchema) -> str:
    return ", ".join(c.name for c in schema.columns)


def to_parquet(table: pa.Table) -> bytes:
    """Parquet bytes of `table`: the same table gives the same bytes (no timestamps are written)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=False, store_schema=True)
    return buf.getvalue()


def from_parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path)


def features_matrix(table: pa.Table, schema: TableSchema) -> np.ndarray:
    """The feature columns as float32 (N, F); text features cannot be a matrix."""
    cols = []
    for c in schema.features:
        if c.type == "string":
            raise SpecError(c.name, f"column {c.name!r} is text: read the table with load_table, not as numbers")
        cols.append(table.column(c.name).to_numpy(zero_copy_only=False).astype(np.float32))
    if not cols:
        return np.zeros((table.num_rows, 0), dtype=np.float32)
    return np.ascontiguousarray(np.column_stack(cols), dtype=np.float32)


def target_vector(table: pa.Table, schema: TableSchema) -> np.ndarray:
    """The target: int64 (N,) for classification, float32 (N,) or (N, T) for regression."""
    if not schema.target:
        raise SpecError("target", "this dataset has no target column")
    if schema.task == "classification":
        return table.column(schema.target[0]).to_numpy(zero_copy_only=False).astype(np.int64)
    cols = [table.column(t).to_numpy(zero_copy_only=False).astype(np.float32) for t in schema.target]
    return cols[0] if len(cols) == 1 else np.column_stack(cols)


def from_arrays(x: Any, y: Any, schema: TableSchema | None = None) -> tuple[pa.Table, TableSchema]:
    """A table from a feature matrix and a target, in `schema`'s columns (default: f0.., target)."""
    x_arr, y_arr = np.asarray(x), np.asarray(y)
    if x_arr.ndim != 2 or x_arr.shape[0] < 1 or x_arr.shape[1] < 1:
        raise SpecError("X", f"expected a 2-d array with at least one row and column, got shape {x_arr.shape}")
    if x_arr.dtype.kind not in "biuf":
        raise SpecError("X", f"expected numbers, got dtype {x_arr.dtype}")
    if y_arr.shape[:1] != (x_arr.shape[0],) or y_arr.ndim > 2:
        raise SpecError("y", f"expected {x_arr.shape[0]} rows to match X, got shape {y_arr.shape}")
    if y_arr.dtype.kind not in "biuf":
        raise SpecError("y", f"expected numbers, got dtype {y_arr.dtype}")
    if schema is None:
        names = [f"f{i}" for i in range(x_arr.shape[1])]
        targets = ["target"] if y_arr.ndim == 1 else [f"target{i}" for i in range(y_arr.shape[1])]
    else:
        names, targets = [c.name for c in schema.features], list(schema.target)
        if x_arr.shape[1] != len(names):
            raise SpecError("X", f"rows have {x_arr.shape[1]} features, the dataset has {len(names)}")
    ys = [y_arr] if y_arr.ndim == 1 else [y_arr[:, i] for i in range(y_arr.shape[1])]
    if len(ys) != len(targets):
        raise SpecError("y", f"expected {len(targets)} target column(s), got {len(ys)}")
    if not np.isfinite(x_arr.astype(np.float64)).all():
        raise SpecError("X", "contains NaN or infinity")
    table = pa.table(
        [pa.array(x_arr[:, i].astype(np.float64)) for i in range(x_arr.shape[1])] + [pa.array(v) for v in ys],
        names=names + targets,
    )
    if schema is None:
        task: Task = "classification" if y_arr.ndim == 1 and _integral(y_arr) else "regression"
        schema = infer_schema(table, targets, task)
    return conform(table, schema), schema


def _integral(y: np.ndarray) -> bool:
    if y.dtype.kind in "biu":
        return True
    return bool(np.all(np.isfinite(y) & (y == np.round(y))))


# -- reading files -------------------------------------------------------------------------------


def read_file(path: Path) -> pa.Table:
    """A data file as an Arrow table; SpecError(file name) when it is missing, corrupt or unsupported."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("path", f"no such file: {path}")
    readers = {".csv": _read_csv, ".parquet": _read_parquet, ".npz": _read_npz, ".npy": _read_npy}
    suffix = path.suffix.lower()
    if suffix not in readers:
        raise SpecError("path", f"{path.name}: unsupported format {suffix!r} (use {', '.join(readers)})")
    table = readers[suffix](path)
    if table.num_rows == 0:
        raise SpecError("path", f"{path.name}: no data rows")
    return table


def _read_csv(path: Path) -> pa.Table:
    import pyarrow.csv as pcsv

    raw = path.read_bytes()
    first = raw.split(b"\n", 1)[0].decode("utf-8", "replace")
    cells = [c.strip() for c in first.split(",")]
    header = not all(_is_number(c) for c in cells if c)
    read = pcsv.ReadOptions(autogenerate_column_names=not header)
    try:
        table = pcsv.read_csv(io.BytesIO(raw), read_options=read)
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise SpecError("path", f"{path.name}: not a readable CSV file ({_first_line(exc)})") from None
    if not header:
        table = table.rename_columns([f"c{i}" for i in range(table.num_columns)])
    return table


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise SpecError("path", f"{path.name}: not a readable Parquet file ({_first_line(exc)})") from None


def _read_npz(path: Path) -> pa.Table:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            xk, yk = ("X", "y") if {"X", "y"} <= keys else ("data", "target")
            if not {xk, yk} <= keys:
                raise SpecError("path", f"{path.name}: needs arrays 'X' and 'y' (has: {', '.join(sorted(keys))})")
            x, y = data[xk], data[yk]
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
        raise SpecError("path", f"{path.name}: not a readable .npz file ({exc})") from None
    return _matrix_table(path, x, y)


def _read_npy(path: Path) -> pa.Table:
    try:
        table = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SpecError("path", f"{path.name}: not a readable .npy file ({exc})") from None
    if table.ndim != 2 or table.shape[1] < 2:
        raise SpecError("path", f"{path.name}: need a 2-d array with features and a last target column")
    return _matrix_table(path, table[:, :-1], table[:, -1])


def _matrix_table(path: Path, x: np.ndarray, y: np.ndarray) -> pa.Table:
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise SpecError("path", f"{path.name}: X must be (N, F) and y (N,), got {x.shape} and {y.shape}")
    if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        raise SpecError("path", f"{path.name}: arrays must hold numbers")
    cols = [pa.array(x[:, i]) for i in range(x.shape[1])] + [pa.array(y)]
    return pa.table(cols, names=[f"f{i}" for i in range(x.shape[1])] + ["target"])
