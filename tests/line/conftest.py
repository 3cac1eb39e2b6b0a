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


def tiny_checkpoint(path: Path, tag: object = 0) -> Path:
    """A real (tiny) digits checkpoint, different per `tag`: what the registry accepts as a version."""
    from aifactory.line.digits_model import DigitsConfig, build_model, save_checkpoint

    cfg = DigitsConfig(widths=(1, 1), hidden=1)
    return save_checkpoint(path, build_model(cfg), cfg, {"tag": str(tag)})
