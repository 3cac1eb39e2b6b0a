from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from aifactory.core.errors import NotFound, SpecError
from aifactory.line.artifacts import ArtifactStore
from aifactory.line.datasets import Datasets

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def test_blobs_are_named_by_their_sha256(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a")
    sha = store.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert store.get(sha).read_bytes() == b"hello"
    src = tmp_path / "f.bin"
    src.write_bytes(b"hello")
    assert store.put_file(src) == sha  # same content, same blob, stored once
    assert [p.name for p in (tmp_path / "a").rglob("*") if p.is_file()] == [sha]
    with pytest.raises(NotFound):
        store.get("0" * 64)
    with pytest.raises(SpecError, match="sha256"):
        store.path("../../etc/passwd")
    with pytest.raises(SpecError, match="no such file"):
        store.put_file(tmp_path / "missing")


def test_datasets_on_postgresql(home: Path) -> None:
    try:
        with sa.create_engine(PG_URL).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:
        pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432")
    ds = Datasets(home, url=PG_URL)
    name = f"t-{uuid.uuid4().hex[:8]}"
    v1 = ds.create(name, np.ones((3, 4)), [0, 1, 2])
    v2 = ds.append(name, np.zeros((2, 4)), [3, 4])
    assert (v1.version, v2.version, v2.parent, v2.rows) == (1, 2, 1, 5)
    x, y = ds.load(f"{name}@2")
    assert x.shape == (5, 4) and y.tolist() == [0, 1, 2, 3, 4]
