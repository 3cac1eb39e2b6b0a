"""The production line: datasets, training, evaluation gate, model registry, pipelines, flywheel.

Everything the line stores lives under `$AIFACTORY_HOME` (see `home()`): a content-addressed
artifact store (`artifacts/`) and one SQLite database (`line.db`) for datasets, models,
aliases, gate decisions and the pipeline step cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def home(path: Path | str | None = None) -> Path:
    """The factory's home directory: `path`, else `$AIFACTORY_HOME`, else `~/.aifactory`."""
    if path is not None:
        return Path(path)
    env = os.environ.get("AIFACTORY_HOME")
    return Path(env).expanduser() if env else Path.home() / ".aifactory"
