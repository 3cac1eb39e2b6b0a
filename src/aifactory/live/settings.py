"""The live factory's settings: every default visible in one typed, frozen object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aifactory.config import read_config, resolve_home
from aifactory.core.errors import SpecError
from aifactory.core.factory import FactorySettings
from aifactory.core.policies.options import apply_options


@dataclass(frozen=True, slots=True)
class LiveSettings:
    home: Path = field(default_factory=resolve_home)
    db_url: str | None = None  # None: SQLite at home/factory.db; PostgreSQL as postgresql+psycopg://...
    gpus: int | None = None  # None: discover with NVML; N: N virtual GPUs per node
    nodes: int = 1
    gpu_memory_mib: int = 0  # memory of each virtual GPU, so --gpu-memory fractions work on them (0: unknown)
    # Host resources per node (milli-CPU, MiB); None: this host's on a real node, not tracked on virtual ones.
    cpu_milli_per_node: int | None = None
    memory_mib_per_node: int | None = None
    policy: str = "fairshare"  # the core's default: quotas, fair share, reclaim
    placement: str = "pack"
    kill_grace_s: float = 10.0  # SIGTERM -> SIGKILL on cancel and time limit
    preempt_grace_s: float = 30.0  # SIGTERM -> SIGKILL for a reclaim victim: its time to checkpoint
    min_runtime_s: float = 60.0  # a job younger than this is never a preemption victim
    projects_file: Path | None = None  # TOML/YAML projects and departments, applied to the store at open
    checkpoint_poll_s: float = 1.0  # how often running jobs' checkpoint files are stat'ed
    policy_opts: tuple[str, ...] = ()  # NAME=VALUE settings of the policy (core.policies.options)
    host: str = "127.0.0.1"
    port: int = 8470

    def __post_init__(self) -> None:
        for name in ("kill_grace_s", "preempt_grace_s", "min_runtime_s"):
            if not getattr(self, name) >= 0:
                raise SpecError(name.removesuffix("_s"), f"must be 0 or more seconds, got {getattr(self, name)}")
        if not isinstance(self.gpu_memory_mib, int) or self.gpu_memory_mib < 0:
            raise SpecError("gpu_memory", f"must be a whole number of MiB >= 0, got {self.gpu_memory_mib!r}")
        for name, unit in (("cpu_milli_per_node", "cpus_per_node"), ("memory_mib_per_node", "memory_per_node")):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise SpecError(unit, f"must be a whole number >= 0, got {value!r}")
        if not self.checkpoint_poll_s > 0:
            raise SpecError("checkpoint_poll", f"must be positive, got {self.checkpoint_poll_s}")
        self.core()  # an unknown policy option or a bad value is refused here, naming it

    @classmethod
    def chosen(cls, home: Path | None = None, **given: Any) -> LiveSettings:
        """The settings a server starts with: the options given (None: not given), over the home's
        `config.toml` `[floor]` table, over the defaults."""
        home = resolve_home(home)
        floor = read_config(home).floor
        from_file: dict[str, Any] = {
            "db_url": floor.get("db"),
            "policy": floor.get("policy"),
            "placement": floor.get("placement"),
            "policy_opts": tuple(floor.get("policy_opts", ())) or None,
        }
        if given.get("policy") not in (None, floor.get("policy")):
            from_file["policy_opts"] = None  # the file's options are its own policy's
        fields = {k: v for k, v in from_file.items() if v is not None}
        fields |= {k: v for k, v in given.items() if v is not None}
        return cls(home=home, **fields)

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def token_path(self) -> Path:
        return self.home / "token"

    @property
    def server_file(self) -> Path:
        return self.home / "server.json"

    def core(self) -> FactorySettings:
        """The core's settings these live settings choose (the policy's options applied last)."""
        chosen = FactorySettings(
            policy=self.policy,
            placement=self.placement,
            kill_grace_s=self.kill_grace_s,
            preempt_grace_s=self.preempt_grace_s,
            min_runtime_s=self.min_runtime_s,
        )
        return apply_options(chosen, self.policy_opts)

    @property
    def database_url(self) -> str:
        """`db_url`, or the embedded SQLite database under `home`."""
        return self.db_url or f"sqlite:///{self.home / 'factory.db'}"
