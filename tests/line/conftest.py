"""Fixtures of the line's tests: a fresh AIFACTORY_HOME per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("AIFACTORY_HOME", str(path))
    return path
