"""Fixtures of the planner tests: the published figures, read in place, and an isolated AIFACTORY_HOME."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from aifactory.plan.catalog import Catalog, load_catalog


@pytest.fixture
def published(shared_data: Path) -> dict[str, Any]:
    return tomllib.loads((shared_data / "reference" / "published.toml").read_text())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty AIFACTORY_HOME, so a user's own catalogue never leaks into a test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("AIFACTORY_HOME", str(path))
    return path


@pytest.fixture
def catalog(home: Path) -> Catalog:
    return load_catalog()
