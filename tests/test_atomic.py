"""Files written whole or not at all, with the mode asked for and no temporary file left behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aifactory.atomic import atomic_file, write_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_file_is_written_whole_with_its_mode(tmp_path: Path) -> None:
    secret, public = tmp_path / "token", tmp_path / "server.json"
    write_atomic(secret, "s3cret\n", mode=0o600)
    write_atomic(public, b'{"url": "x"}')
    assert (secret.read_text(), mode(secret)) == ("s3cret\n", 0o600)
    assert (public.read_text(), mode(public)) == ('{"url": "x"}', 0o644)
    write_atomic(secret, "new\n", mode=0o600)  # replacing keeps the asked mode, not the old file's
    assert (secret.read_text(), mode(secret)) == ("new\n", 0o600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.json", "token"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    write_atomic(target, b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_file(target) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_the_temporary_file_is_private_while_it_is_written(tmp_path: Path) -> None:
    target = tmp_path / "token"
    with atomic_file(target, mode=0o644, durable=True) as fh:
        fh.write(b"partly")
        (tmp,) = [p for p in tmp_path.iterdir() if p.name != "token"]
        assert mode(tmp) == 0o600 and not target.exists()
    assert target.read_bytes() == b"partly" and mode(target) == 0o644
