"""Versioned datasets: immutable, content-addressed snapshots of a table or of a directory of files.

A table version is one Parquet blob in the artifact store with its `TableSchema` (column names
and types, target column(s), task) in the version row; the same table gives the same bytes, so
equal data has an equal sha256. A files version (images, text shards, anything) stores every
file by its own sha256 and a manifest (relative path, size, sha256 per file, sorted) whose
sha256 is the version's. Each version records its parent and where it came from (lineage).
The version row is written only after every blob has landed, so a bad or interrupted import
leaves no version behind.

References: `digits` (latest version), `digits@3` (version 3).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from aifactory.core.errors import NotFound, SpecError, UnknownName
from aifactory.line import db
from aifactory.line import home as default_home
from aifactory.line.artifacts import ArtifactStore, sha256_file
from aifactory.line.registry import check_name
from aifactory.line.tables import (
    TableSchema,
    Task,
    conform,
    features_matrix,
    from_arrays,
    from_parquet,
    infer_schema,
    read_file,
    target_vector,
    to_parquet,
)

SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
TABLE, FILES, ARRAYS = "table", "files", "arrays"  # ARRAYS: versions made before tables (np.save X, y)
MAX_FILES = 100_000  # files in one directory version
# The version row's columns that are DatasetVersion's fields as they are (schema is stored as JSON).
ROW_FIELDS = ("name", "version", "sha256", "parent", "rows", "features", "source", "created_at", "kind")


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    sha256: str
    parent: int | None
    rows: int  # table rows, or files in a files version
    features: int  # feature columns (0 for files)
    source: str
    created_at: float  # Unix seconds
    path: Path  # the Parquet blob, or the manifest of a files version
    kind: str = TABLE
    schema: TableSchema | None = None

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


def _decode_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        x = np.load(fh, allow_pickle=False)
        y = np.load(fh, allow_pickle=False)
    return x, y


def _arrays_schema(x: np.ndarray) -> TableSchema:
    _, schema = from_arrays(x[:1], np.zeros(1, dtype=np.int64))
    return schema.model_copy(update={"classes": None})


class Datasets:
    def __init__(self, home: Path | None = None, url: str | None = None) -> None:
        self.home = default_home(home)
        self.engine = db.open_engine(self.home, url)
        self.store = ArtifactStore(self.home / "artifacts")

    # -- creating versions -------------------------------------------------------------

    def create_from_file(
        self, name: str, path: Path, target: list[str] | None = None, task: Task | None = None
    ) -> DatasetVersion:
        """A new version of `name` from a CSV, Parquet, .npz or .npy file (see `tables.read_file`).

        A dataset that has versions keeps its schema: the file must have the same columns.
        """
        check_name("dataset", name)
        path = Path(path)
        table = read_file(path)
        schema = self._schema_of_latest(name)
        if schema is None or target is not None or task is not None:
            schema = infer_schema(table, target, task)
        return self.create_table(name, table, schema, source=f"file:{path.name}", where=path.name)

    def create_from_sklearn(self, name: str, which: str = "digits") -> DatasetVersion:
        """A new version of `name` from a dataset bundled with scikit-learn (offline)."""
        check_name("dataset", name)
        if which not in SKLEARN_DATASETS:
            raise UnknownName("scikit-learn dataset", which, SKLEARN_DATASETS)
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{which}")()
        names = [str(n) for n in getattr(bunch, "feature_names", [])] or [f"f{i}" for i in range(bunch.data.shape[1])]
        table = pa.table(
            [pa.array(bunch.data[:, i].astype(np.float64)) for i in range(bunch.data.shape[1])]
            + [pa.array(bunch.target)],
            names=[*names, "target"],
        )
        task: Task = "regression" if which == "diabetes" else "classification"
        return self.create_table(name, table, infer_schema(table, ["target"], task), source=f"sklearn:{which}")

    def create(self, name: str, x: Any, y: Any, source: str = "arrays") -> DatasetVersion:
        """A new version of `name` holding exactly (x, y), in the columns of its latest version if any."""
        check_name("dataset", name)
        table, schema = from_arrays(x, y, self._schema_of_latest(name))
        return self.create_table(name, table, schema, source=source)

    def create_table(
        self,
        name: str,
        table: pa.Table,
        schema: TableSchema,
        source: str = "table",
        parent: int | None = None,
        where: str = "data",
    ) -> DatasetVersion:
        """A new version holding `table` checked against `schema` (parent: default the latest)."""
        check_name("dataset", name)
        table = conform(table, schema, where)
        if table.num_rows == 0:
            raise SpecError("rows", f"{where}: no rows")
        if schema.task == "classification":  # the classes are those the data holds, not a stale list
            label = schema.target[0]
            schema = schema.model_copy(update={"classes": sorted({int(v) for v in table.column(label).to_pylist()})})
        sha = self.store.put_bytes(to_parquet(table))
        parent = self._latest_version(name) if parent is None else parent
        return self._insert(name, sha, parent, table.num_rows, len(schema.features), source, TABLE, schema)

    def create_from_dir(self, name: str, folder: Path) -> DatasetVersion:
        """A new files version of `name`: every regular file under `folder`, by content."""
        check_name("dataset", name)
        folder = Path(folder)
        if not folder.is_dir():
            raise SpecError("path", f"no such directory: {folder}")
        entries = []
        for root, dirs, files in os.walk(folder, followlinks=False):
            dirs.sort()
            for fname in sorted(files):
                path = Path(root) / fname
                rel = path.relative_to(folder).as_posix()
                if path.is_symlink() or not path.is_file():
                    raise SpecError(rel, f"{rel}: not a regular file (links are not followed)")
                try:
                    sha = self.store.put_file(path)
                except OSError as exc:
                    raise SpecError(rel, f"{rel}: cannot be read ({exc.strerror})") from None
                entries.append({"path": rel, "size": path.stat().st_size, "sha256": sha})
                if len(entries) > MAX_FILES:
                    raise SpecError("path", f"{folder}: more than {MAX_FILES} files")
        if not entries:
            raise SpecError("path", f"{folder}: no files")
        manifest = json.dumps({"files": entries}, sort_keys=True).encode()
        sha = self.store.put_bytes(manifest)
        return self._insert(name, sha, self._latest_version(name), len(entries), 0, f"dir:{folder.name}", FILES, None)

    def append(self, name: str, x: Any, y: Any, parent: int | None = None, source: str = "append") -> DatasetVersion:
        """A new version: the rows of `parent` (default: latest) followed by (x, y) in its schema."""
        base = self.get(name, parent)
        schema = self._schema(base)
        new, _ = from_arrays(x, y, schema)
        return self.append_table(name, new, base.version, source)

    def append_table(
        self, name: str, rows: pa.Table, parent: int | None = None, source: str = "append"
    ) -> DatasetVersion:
        """A new version: the rows of `parent` (default: latest) followed by `rows` (same columns)."""
        base = self.get(name, parent)
        schema = self._schema(base)
        new = conform(rows, schema, "appended rows")
        table = pa.concat_tables([self.load_table(base), new])
        return self.create_table(name, table, schema, source=source, parent=base.version)

    def _insert(
        self,
        name: str,
        sha: str,
        parent: int | None,
        rows: int,
        features: int,
        source: str,
        kind: str,
        schema: TableSchema | None,
    ) -> DatasetVersion:
        t = db.dataset_versions
        now = time.time()
        with self.engine.begin() as conn:
            db.write_lock(conn, f"dataset:{name}")
            last = conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.name == name)).scalar()
            version = DatasetVersion(
                name, (last or 0) + 1, sha, parent, rows, features, source, now, self.store.path(sha), kind, schema
            )
            row = {f: getattr(version, f) for f in ROW_FIELDS}
            conn.execute(t.insert().values(**row, schema=schema.model_dump_json() if schema is not None else None))
        return version

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
        """(X float32 (N, F), y) of a table version: y int64 for classification, float32 for regression."""
        dv = ref if isinstance(ref, DatasetVersion) else self.resolve(ref)
        if dv.kind == ARRAYS:
            return _decode_arrays(dv.path)
        schema = self._schema(dv)
        table = self.load_table(dv)
        return features_matrix(table, schema), target_vector(table, schema)

    def load_table(self, ref: str | DatasetVersion) -> pa.Table:
        dv = ref if isinstance(ref, DatasetVersion) else self.resolve(ref)
        if dv.kind == FILES:
            raise SpecError("dataset", f"{dv.ref} is a directory of files, not a table: use files()")
        if dv.kind == ARRAYS:
            x, y = _decode_arrays(dv.path)
            return from_arrays(x, y)[0]
        return from_parquet(dv.path)

    def manifest(self, ref: str | DatasetVersion) -> list[dict[str, Any]]:
        """[{path, size, sha256}] of a files version."""
        dv = ref if isinstance(ref, DatasetVersion) else self.resolve(ref)
        if dv.kind != FILES:
            raise SpecError("dataset", f"{dv.ref} is a table, not a directory of files")
        files: list[dict[str, Any]] = json.loads(dv.path.read_text())["files"]
        return files

    def materialize(self, ref: str | DatasetVersion, dest: Path) -> Path:
        """Lay a files version out under `dest` (hard links into the store where possible)."""
        dest = Path(dest)
        for entry in self.manifest(ref):
            target = dest / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = self.store.get(entry["sha256"])
            if sha256_file(blob) != entry["sha256"]:
                raise SpecError(entry["path"], f"{entry['path']}: stored copy is damaged")
            try:
                os.link(blob, target)
            except OSError:
                target.write_bytes(blob.read_bytes())
        return dest

    def schema(self, ref: str | DatasetVersion) -> TableSchema:
        dv = ref if isinstance(ref, DatasetVersion) else self.resolve(ref)
        return self._schema(dv)

    def _schema(self, dv: DatasetVersion) -> TableSchema:
        if dv.schema is not None:
            return dv.schema
        if dv.kind == ARRAYS:
            x, _ = _decode_arrays(dv.path)
            return _arrays_schema(x)
        raise SpecError("dataset", f"{dv.ref} is a directory of files: it has no table schema")

    def _schema_of_latest(self, name: str) -> TableSchema | None:
        if self._latest_version(name) is None:
            return None
        latest = self.get(name)
        return self._schema(latest) if latest.kind != FILES else None

    def _latest_version(self, name: str) -> int | None:
        t = db.dataset_versions
        with self.engine.begin() as conn:
            return conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.name == name)).scalar()

    def _row(self, row: Any) -> DatasetVersion:
        schema = TableSchema.model_validate_json(row.schema) if row.schema else None
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
            kind=row.kind or ARRAYS,
            schema=schema,
        )
