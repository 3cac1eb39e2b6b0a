"""The live factory's settings: every default visible in one typed, frozen object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_home() -> Path:
    """`$AIFACTORY_HOME`, or `~/.aifactory` where it is unset."""
    env = os.environ.get("AIFACTORY_HOME")
    return Path(env).expanduser() if env else Path.home() / ".aifactory"


@dataclass(frozen=True, slots=True)
class LiveSettings:
    home: Path = field(default_factory=default_home)
    db_url: str | None = None  # None: SQLite at home/factory.db; PostgreSQL as postgresql+psycopg://...
    gpus: int | None = None  # None: discover with NVML; N: N virtual GPUs per node
    nodes: int = 1
    policy: str = "fifo"
    placement: str = "pack"
    kill_grace_s: float = 10.0  # SIGTERM -> SIGKILL on cancel and time limit
    host: str = "127.0.0.1"
    port: int = 8470

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def token_path(self) -> Path:
        return self.home / "token"

    @property
    def server_file(self) -> Path:
        return self.home / "server.json"

    @property
    def database_url(self) -> str:
        """`db_url`, or the embedded SQLite database under `home`."""
        return self.db_url or f"sqlite:///{self.home / 'factory.db'}"
