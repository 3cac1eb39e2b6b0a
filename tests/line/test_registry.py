from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from aifactory.core.errors import NotFound, SpecError, UnknownName
from aifactory.line.registry import GateDecision, Registry

from .conftest import tiny_checkpoint

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _ckpt(tmp_path: Path, content: bytes) -> Path:
    return tiny_checkpoint(tmp_path / f"{uuid.uuid4().hex}.pt", content)


def _exercise(reg: Registry, tmp_path: Path, name: str) -> None:
    v1 = reg.register(name, _ckpt(tmp_path, b"one"), {"accuracy": 0.9}, {"dataset": "digits@1"})
    v2 = reg.register(name, _ckpt(tmp_path, b"two"), {"accuracy": 0.95}, {"dataset": "digits@2"})
    assert (v1.version, v2.version) == (1, 2)
    assert v1.checkpoint_path.read_bytes() != v2.checkpoint_path.read_bytes()  # the registry keeps its own copy
    assert v1.checkpoint_path.is_relative_to(reg.home)
    assert reg.resolve(name).version == 2  # no champion yet: the latest
    reg.set_alias(name, "champion", 1)
    assert reg.resolve(name).version == 1
    assert reg.resolve(f"{name}@champion").metrics == {"accuracy": 0.9}
    assert reg.resolve(f"{name}@2").lineage == {"dataset": "digits@2"}
    reg.set_alias(name, "champion", 2, reason="gate")
    assert reg.rollback(name, "champion").version == 1
    assert reg.aliases(name) == {"champion": 1}
    hist = reg.alias_history(name, "champion")
    assert [(h.version, h.previous, h.kind) for h in hist] == [(1, None, "set"), (2, 1, "set"), (1, 2, "rollback")]
    with pytest.raises(NotFound, match="pointed nowhere"):
        reg.rollback(name, "champion")


def test_versions_aliases_and_rollback_on_sqlite(home: Path, tmp_path: Path) -> None:
    _exercise(Registry(home), tmp_path, "digits")


def test_rollback_walks_back_through_moves(home: Path, tmp_path: Path) -> None:
    reg = Registry(home)
    for i in range(3):
        reg.register("m", _ckpt(tmp_path, bytes([i])), {}, {})
        reg.set_alias("m", "champion", i + 1)
    assert reg.rollback("m", "champion").version == 2
    assert reg.rollback("m", "champion").version == 1
    reg.set_alias("m", "champion", 3)
    assert reg.rollback("m", "champion").version == 1


def test_versions_aliases_and_rollback_on_postgresql(home: Path, tmp_path: Path) -> None:
    _exercise(Registry(home, url=_pg_or_skip()), tmp_path, f"digits-{uuid.uuid4().hex[:8]}")


def test_unknown_model_alias_and_version_are_not_found(home: Path, tmp_path: Path) -> None:
    reg = Registry(home)
    reg.register("digits", _ckpt(tmp_path, b"x"), {}, {})
    with pytest.raises(UnknownName, match="did you mean 'digits'"):
        reg.resolve("digitz@champion")
    with pytest.raises(UnknownName, match="alias"):
        reg.resolve("digits@champion")
    with pytest.raises(NotFound, match="no version 7"):
        reg.resolve("digits@7")
    with pytest.raises(SpecError):
        reg.resolve("@champion")
    with pytest.raises(SpecError, match="alias"):
        reg.set_alias("digits", "12", 1)
    with pytest.raises(NotFound):
        reg.set_alias("digits", "champion", 9)
    assert reg.aliases("digits") == {}


def test_gate_decisions_are_recorded(home: Path, tmp_path: Path) -> None:
    reg = Registry(home)
    d = GateDecision("digits", 2, 1, "accuracy", 0.97, 0.93, 0.01, "holdout@1", True, "beats by 0.04")
    reg.record_decision(d)
    [got] = reg.decisions("digits")
    assert got.promoted and got.challenger_score == 0.97 and got.at > 0


WRITER = """
import sys
from pathlib import Path
from aifactory.line.registry import Registry
sys.path.insert(0, sys.argv[5])
from conftest import tiny_checkpoint
home, tag, model, url = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] or None
reg = Registry(home, url=url)
for i in range(15):
    p = home / f"{tag}-{i}.pt"
    tiny_checkpoint(p, f"{model}-{tag}-{i}")
    reg.register(model, p, {}, {})
    reg.set_alias(model, "champion", reg.latest(model).version)
"""


def _pg_or_skip() -> str:
    try:
        with sa.create_engine(PG_URL).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:
        pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432")
    return PG_URL


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_register_at_once_without_losing_a_version(home: Path, backend: str) -> None:
    url = _pg_or_skip() if backend == "postgresql" else ""
    model = f"digits-{uuid.uuid4().hex[:8]}"
    here = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(home), tag, model, url, here]) for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    reg = Registry(home, url=url or None)
    versions = reg.versions(model)
    assert [v.version for v in versions] == list(range(1, 31))
    assert len({v.sha256 for v in versions}) == 30
    assert len(reg.alias_history(model, "champion")) == 30


def test_db_head_constant_matches_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from aifactory.line import db

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [db.HEAD]
