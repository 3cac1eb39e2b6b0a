from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifactory.core.errors import NotFound, SpecError, UnknownName
from aifactory.line.datasets import Datasets


def _xy(n: int = 20, f: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 17, size=(n, f)).astype(np.float64), rng.integers(0, 10, size=n)


def test_sklearn_digits_then_append_makes_a_child_version(home: Path) -> None:
    ds = Datasets(home)
    v1 = ds.create_from_sklearn("digits", "digits")
    assert (v1.version, v1.parent, v1.rows, v1.features) == (1, None, 1797, 64)
    x1, y1 = ds.load("digits@1")
    assert x1.dtype == np.float32 and y1.dtype == np.int64 and x1.max() == 16.0
    extra_x, extra_y = x1[:5] + 1, y1[:5]
    v2 = ds.append("digits", extra_x, extra_y)
    assert (v2.version, v2.parent, v2.rows) == (2, 1, 1802)
    x2, y2 = ds.load("digits")
    np.testing.assert_array_equal(x2[-5:], extra_x)
    np.testing.assert_array_equal(y2[:1797], y1)
    assert v2.sha256 != v1.sha256 and v2.path.is_file()
    # Equal content, equal address: a re-import of the same data shares the blob.
    v3 = ds.create_from_sklearn("digits", "digits")
    assert v3.sha256 == v1.sha256 and v3.parent == 2
    assert [v.version for v in ds.versions("digits")] == [1, 2, 3]


def test_every_file_format_reads_the_same_rows(home: Path, tmp_path: Path) -> None:
    x, y = _xy()
    csv = tmp_path / "d.csv"
    csv.write_text("label," + ",".join(f"p{i}" for i in range(4)) + "\n")
    with open(csv, "a") as fh:
        for row, label in zip(x, y, strict=True):
            fh.write(f"{label}," + ",".join(str(v) for v in row) + "\n")
    pq.write_table(pa.table({**{f"p{i}": x[:, i] for i in range(4)}, "target": y}), tmp_path / "d.parquet")
    np.savez(tmp_path / "d.npz", X=x, y=y)
    np.save(tmp_path / "d.npy", np.column_stack([x, y]))
    ds = Datasets(home)
    for name in ("d.csv", "d.parquet", "d.npz", "d.npy"):
        version = ds.create_from_file(name.replace(".", "-"), tmp_path / name)
        got_x, got_y = ds.load(version.ref)
        np.testing.assert_array_equal(got_x, x.astype(np.float32))
        np.testing.assert_array_equal(got_y, y)
        assert version.schema is not None and version.schema.task == "classification"
    # The same file again: the same bytes, the same address.
    again = ds.create_from_file("d-csv", tmp_path / "d.csv")
    assert again.sha256 == ds.get("d-csv", 1).sha256 and again.version == 2


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npz", ".npy"])
def test_truncated_file_is_a_clear_error_and_no_version(home: Path, tmp_path: Path, suffix: str) -> None:
    x, y = _xy(200, 8)
    path = tmp_path / f"d{suffix}"
    if suffix == ".csv":
        path.write_text("\n".join(",".join(map(str, [*r, t])) for r, t in zip(x, y, strict=True)))
    elif suffix == ".parquet":
        pq.write_table(pa.table({**{f"p{i}": x[:, i] for i in range(8)}, "label": y}), path)
    elif suffix == ".npz":
        np.savez(path, X=x, y=y)
    else:
        np.save(path, np.column_stack([x, y]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3 + 1])
    ds = Datasets(home)
    with pytest.raises(SpecError) as err:
        ds.create_from_file("table", path)
    assert err.value.field == "path" and path.name in str(err.value)
    assert ds.names() == []
    assert not [p for p in (home / "artifacts").rglob("*") if p.is_file()]


def test_bad_arrays_and_unknown_names(home: Path, tmp_path: Path) -> None:
    ds = Datasets(home)
    x, y = _xy()
    with pytest.raises(SpecError, match="y"):
        ds.create("t", x, y[:-1])
    with pytest.raises(SpecError, match="NaN"):
        ds.create("t", np.full((2, 2), np.nan), [0, 1])
    ds.create("t", x, y)
    with pytest.raises(SpecError, match="features"):
        ds.append("t", x[:, :3], y)
    with pytest.raises(UnknownName, match=r"known: t\)"):
        ds.resolve("u")
    with pytest.raises(NotFound, match="no version 5"):
        ds.resolve("t@5")
    with pytest.raises(SpecError):
        ds.resolve("t@x")
    with pytest.raises(UnknownName):
        ds.create_from_sklearn("t", "mnist")
    with pytest.raises(SpecError, match="unsupported"):
        (tmp_path / "a.txt").write_text("1,2")
        ds.create_from_file("t", tmp_path / "a.txt")
    assert [v.version for v in ds.versions("t")] == [1]


def test_tables_keep_their_schema_and_bad_data_names_the_column(home: Path, tmp_path: Path) -> None:
    ds = Datasets(home)
    good = tmp_path / "visits.csv"
    good.write_text("age,city,spend,churned\n31,Oslo,12.5,0\n45,Bergen,3.0,1\n29,Oslo,8.25,0\n")
    v1 = ds.create_from_file("visits", good, target=["churned"])
    assert v1.schema is not None
    assert [(c.name, c.type) for c in v1.schema.columns] == [
        ("age", "int"),
        ("city", "string"),
        ("spend", "float"),
        ("churned", "int"),
    ]
    assert (v1.schema.task, v1.schema.classes, v1.features) == ("classification", [0, 1], 3)
    table = ds.load_table(v1)
    assert table.column("city").to_pylist() == ["Oslo", "Bergen", "Oslo"]
    with pytest.raises(SpecError) as err:
        ds.load(v1)  # text cannot be a feature matrix
    assert err.value.field == "city"
    cases = {
        "age,city,spend\n31,Oslo,1.0\n": "churned",  # a column missing
        "age,city,spend,churned,extra\n31,Oslo,1.0,0,9\n": "extra",  # a column too many
        "age,city,spend,churned\n31,Oslo,lots,0\n": "spend",  # text where the schema says float
        "age,city,spend,churned\n31,Oslo,,0\n": "spend",  # a missing value
        "age,city,spend,churned\n31,Oslo,nan,0\n": "spend",  # NaN
    }
    for i, (text, column) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.csv"
        bad.write_text(text)
        with pytest.raises(SpecError) as err:
            ds.create_from_file("visits", bad)
        assert err.value.field == column and column in str(err.value), text
    assert [v.version for v in ds.versions("visits")] == [1]  # nothing bad became a version
    more = pa.table({"age": [50], "city": ["Tromsø"], "spend": [1.0], "churned": [2]})
    v2 = ds.append_table("visits", more)
    assert (v2.version, v2.parent, v2.rows) == (2, 1, 4) and v2.schema is not None and v2.schema.classes == [0, 1, 2]


def test_a_regression_table_from_scikit_learn(home: Path) -> None:
    ds = Datasets(home)
    v = ds.create_from_sklearn("diabetes", "diabetes")
    x, y = ds.load(v)
    assert v.schema is not None and v.schema.task == "regression" and v.schema.classes is None
    assert x.shape == (442, 10) and y.dtype == np.float32 and float(y.max()) == 346.0
    v2 = ds.append("diabetes", x[:2], y[:2] + 0.5)
    assert ds.load(v2)[1][-1] == pytest.approx(float(y[1]) + 0.5)


def test_a_directory_of_files_is_a_version_with_a_manifest(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "shards"
    (src / "b").mkdir(parents=True)
    (src / "a.txt").write_text("first shard\n")
    (src / "b" / "c.bin").write_bytes(bytes(range(256)))
    ds = Datasets(home)
    v1 = ds.create_from_dir("corpus", src)
    assert (v1.kind, v1.rows, v1.features) == ("files", 2, 0)
    manifest = ds.manifest(v1)
    assert [(e["path"], e["size"]) for e in manifest] == [("a.txt", 12), ("b/c.bin", 256)]
    out = ds.materialize(v1, tmp_path / "out")
    assert (out / "b" / "c.bin").read_bytes() == bytes(range(256))
    assert ds.create_from_dir("corpus", src).sha256 == v1.sha256  # same files, same address
    (src / "a.txt").write_text("changed\n")
    assert ds.create_from_dir("corpus", src).sha256 != v1.sha256
    with pytest.raises(SpecError):
        ds.load_table(v1)
    (src / "link").symlink_to("/etc/passwd")
    with pytest.raises(SpecError) as err:
        ds.create_from_dir("corpus", src)
    assert err.value.field == "link"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpecError, match="no files"):
        ds.create_from_dir("corpus", empty)
    assert len(ds.versions("corpus")) == 3
