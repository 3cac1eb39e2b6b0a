"""The production line: datasets, training, evaluation gate, model registry, pipelines, flywheel.

Everything the line stores lives under `$AIFACTORY_HOME` (see `home()`): a content-addressed
artifact store (`artifacts/`) and one SQLite database (`line.db`) for datasets, models,
aliases, gate decisions and the pipeline step cache.
"""

from __future__ import annotations

from pathlib import Path

from aifactory.config import resolve_home


def home(path: Path | str | None = None) -> Path:
    """The factory's home directory: `path`, else `$AIFACTORY_HOME`, else `~/.aifactory`."""
    return resolve_home(path)
