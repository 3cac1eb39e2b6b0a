"""Versioned datasets: immutable, content-addressed snapshots of (X, y) with a parent chain.

A snapshot is one blob in the artifact store: `np.save(X)` then `np.save(y)` back to back
(X float32 (N, F), y int64 (N,)), which is byte-for-byte deterministic, so equal data
has an equal sha256. The version row is written only after the blob has landed, so a bad
or interrupted import leaves no partial version behind.

References: `digits` (latest version), `digits@3` (version 3).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from aifactory.core.errors import NotFound, SpecError, UnknownName
from aifactory.line import db
from aifactory.line import home as default_home
from aifactory.line.artifacts import ArtifactStore
from aifactory.line.readers import read_table
from aifactory.line.registry import check_name

SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer")


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    sha256: str
    parent: int | None
    rows: int
    features: int
    source: str
    created_at: float  # Unix seconds
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def parse_ref(ref: str) -> tuple[str, int | None]:
    name, sep, tag = ref.partition("@")
    check_name("dataset", name)
    if not sep or tag in ("", "latest"):
        if sep and not tag:
            raise SpecError("dataset", f"{ref!r}: nothing after '@'")
        return name, None
    if not tag.isdigit():
        raise SpecError("dataset", f"{ref!r}: the part after '@' must be a version number")
    return name, int(tag)


def check_arrays(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise to X float32 (N, F), y int64 (N,)."""
    x_arr, y_arr = np.asarray(x), np.asarray(y)
    if x_arr.ndim != 2 or x_arr.shape[0] < 1 or x_arr.shape[1] < 1:
        raise SpecError("X", f"expected a 2-d array with at least one row and column, got shape {x_arr.shape}")
    if x_arr.dtype.kind not in "biuf":
        raise SpecError("X", f"expected numbers, got dtype {x_arr.dtype}")
    if y_arr.shape != (x_arr.shape[0],):
        raise SpecError("y", f"expected shape ({x_arr.shape[0]},) to match X, got {y_arr.shape}")
    if y_arr.dtype.kind not in "biuf":
        raise SpecError("y", f"expected integer labels, got dtype {y_arr.dtype}")
    x32 = x_arr.astype(np.float32)
    if not np.isfinite(x32).all():
        raise SpecError("X", "contains NaN or infinity")
    if y_arr.dtype.kind == "f" and not (np.isfinite(y_arr).all() and (y_arr == np.round(y_arr)).all()):
        raise SpecError("y", "labels must be whole numbers")
    return np.ascontiguousarray(x32), y_arr.astype(np.int64)


def _encode(x: np.ndarray, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    np.save(buf, y, allow_pickle=False)
    return buf.getvalue()


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        x = np.load(fh, allow_pickle=False)
        y = np.load(fh, allow_pickle=False)
    return x, y


class Datasets:
    def __init__(self, home: Path | None = None, url: str | None = None) -> None:
        self.home = default_home(home)
        self.engine = db.open_engine(self.home, url)
        self.store = ArtifactStore(self.home / "artifacts")

    # -- creating versions -------------------------------------------------------------

    def create_from_file(self, name: str, path: Path) -> DatasetVersion:
        """A new version of `name` from a CSV, Parquet, .npz or .npy file (see `readers`)."""
        check_name("dataset", name)
        path = Path(path)
        x, y = read_table(path)
        return self._add(name, x, y, parent=self._latest_version(name), source=f"file:{path.name}")

    def create_from_sklearn(self, name: str, which: str = "digits") -> DatasetVersion:
        """A new version of `name` from a dataset bundled with scikit-learn (offline)."""
        check_name("dataset", name)
        if which not in SKLEARN_DATASETS:
            raise UnknownName("scikit-learn dataset", which, SKLEARN_DATASETS)
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{which}")()
        return self._add(name, bunch.data, bunch.target, parent=self._latest_version(name), source=f"sklearn:{which}")

    def create(self, name: str, x: Any, y: Any, source: str = "arrays") -> DatasetVersion:
        """A new version of `name` holding exactly (x, y)."""
        check_name("dataset", name)
        return self._add(name, x, y, parent=self._latest_version(name), source=source)

    def append(self, name: str, x: Any, y: Any, parent: int | None = None, source: str = "append") -> DatasetVersion:
        """A new version: the rows of `parent` (default: latest) followed by (x, y)."""
        base = self.get(name, parent)
        bx, by = self.load(base.ref)
        x_new, y_new = check_arrays(x, y)
        if x_new.shape[1] != bx.shape[1]:
            raise SpecError("X", f"rows have {x_new.shape[1]} features, {base.ref} has {bx.shape[1]}")
        return self._add(name, np.vstack([bx, x_new]), np.concatenate([by, y_new]), parent=base.version, source=source)

    def _add(self, name: str, x: Any, y: Any, parent: int | None, source: str) -> DatasetVersion:
        x_arr, y_arr = check_arrays(x, y)
        sha = self.store.put_bytes(_encode(x_arr, y_arr))
        t = db.dataset_versions
        now = time.time()
        with self.engine.begin() as conn:
            db.write_lock(conn, f"dataset:{name}")
            last = conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.name == name)).scalar()
            version = (last or 0) + 1
            row: dict[str, Any] = {
                "name": name,
                "version": version,
                "sha256": sha,
                "parent": parent,
                "rows": int(x_arr.shape[0]),
                "features": int(x_arr.shape[1]),
                "source": source,
                "created_at": now,
            }
            conn.execute(t.insert().values(**row))
        return DatasetVersion(**row, path=self.store.get(sha))

    # -- reading -----------------------------------------------------------------------

    def names(self) -> list[str]:
        t = db.dataset_versions
        with self.engine.begin() as conn:
            return list(conn.execute(sa.select(t.c.name).distinct().order_by(t.c.name)).scalars())

    def versions(self, name: str) -> list[DatasetVersion]:
        t = db.dataset_versions
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(t).where(t.c.name == name).order_by(t.c.version)).all()
        if not rows:
            raise UnknownName("dataset", name, self.names())
        return [self._row(r) for r in rows]

    def get(self, name: str, version: int | None = None) -> DatasetVersion:
        if version is None:
            return self.versions(name)[-1]
        t = db.dataset_versions
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t).where(t.c.name == name, t.c.version == int(version))).first()
        if row is None:
            known = ", ".join(str(v.version) for v in self.versions(name))
            raise NotFound(f"dataset {name!r} has no version {version} (versions: {known})")
        return self._row(row)

    def resolve(self, ref: str) -> DatasetVersion:
        name, version = parse_ref(ref)
        return self.get(name, version)

    def load(self, ref: str | DatasetVersion) -> tuple[np.ndarray, np.ndarray]:
        """(X float32 (N, F), y int64 (N,)) of a version."""
        dv = ref if isinstance(ref, DatasetVersion) else self.resolve(ref)
        return _decode(dv.path)

    def _latest_version(self, name: str) -> int | None:
        t = db.dataset_versions
        with self.engine.begin() as conn:
            return conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.name == name)).scalar()

    def _row(self, row: sa.Row[Any]) -> DatasetVersion:
        return DatasetVersion(
            name=row.name,
            version=row.version,
            sha256=row.sha256,
            parent=row.parent,
            rows=row.rows,
            features=row.features,
            source=row.source,
            created_at=row.created_at,
            path=self.store.path(row.sha256),
        )
