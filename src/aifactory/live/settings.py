"""The live factory's settings: every default visible in one typed, frozen object."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

from aifactory.config import read_config, resolve_home
from aifactory.core.errors import SpecError, UnknownName
from aifactory.core.factory import FactorySettings
from aifactory.core.policies.options import apply_options


def opt(flag: str, parse: Callable[[str], Any], help: str, many: bool = False) -> dict[str, Any]:
    """A field's command-line option: its flag, how its text is read, its help; `many`: repeatable."""
    return {"flag": flag, "parse": parse, "help": help, "many": many}


ISOLATION_ENV = "AIFACTORY_ISOLATION"


def _flag(text: str) -> bool:
    return True


def memory_mib(text: str) -> int:
    """`64GiB` -> 65536 (ValueError naming the value)."""
    from aifactory.live.wire import parse_memory_mib

    return parse_memory_mib(text)


def milli_cpu(text: str) -> int:
    """`4` or `0.5` cores -> milli-CPU."""
    cores = float(text)
    if not 0 <= cores < 1e6:
        raise ValueError(f"must be 0 or more cores, got {text!r}")
    return round(cores * 1000)


LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class LiveSettings:
    # Each field's `opt` is its command-line option for `aifactory up` and the server module
    # (options.py builds both from these): (flag, parser of its text, help).
    home: Path = field(
        default_factory=resolve_home,
        metadata=opt("--home", Path, "data directory (default: $AIFACTORY_HOME or ~/.aifactory)"),
    )
    db_url: str | None = field(
        default=None,
        metadata=opt("--db", str, "store URL (default: SQLite under the home; PostgreSQL as postgresql+psycopg://...)"),
    )
    gpus: int | None = field(
        default=None,
        metadata=opt(
            "--gpus", int, "virtual GPUs per node; 0 with --cpus-per-node: CPU-only nodes (default: discover with NVML)"
        ),
    )
    nodes: int = field(default=1, metadata=opt("--nodes", int, "virtual nodes (with --gpus)"))
    gpu_memory_mib: int = field(
        default=0,
        metadata=opt(
            "--gpu-memory",
            memory_mib,
            "memory of each virtual GPU, e.g. 80GiB, so jobs' --gpu-memory fractions work on them",
        ),
    )
    # Host resources per node (milli-CPU, MiB); None: this host's on a real node, not tracked on virtual ones.
    cpu_milli_per_node: int | None = field(
        default=None,
        metadata=opt(
            "--cpus-per-node",
            milli_cpu,
            "CPU cores per node jobs' cpus count against (default: this host's on a real node; none on virtual ones)",
        ),
    )
    memory_mib_per_node: int | None = field(
        default=None,
        metadata=opt(
            "--memory-per-node",
            memory_mib,
            "memory per node jobs' memory counts against, e.g. 64GiB (default: as --cpus-per-node)",
        ),
    )
    policy: str = field(
        default="fairshare",
        metadata=opt("--policy", str, "scheduling policy by name (fifo, priority, fairshare, las, srtf, backfill)"),
    )
    placement: str = field(
        default="pack",
        metadata=opt("--placement", str, "placement policy by name (pack, spread, bestfit, fgd, topology)"),
    )
    kill_grace_s: float = field(
        default=10.0, metadata=opt("--kill-grace", float, "seconds from SIGTERM to SIGKILL on cancel and time limit")
    )
    preempt_grace_s: float = field(
        default=30.0,
        metadata=opt("--preempt-grace", float, "seconds a reclaim victim gets after SIGTERM, to checkpoint"),
    )
    min_runtime_s: float = field(
        default=60.0, metadata=opt("--min-runtime", float, "seconds a job is safe from preemption")
    )
    projects_file: Path | None = field(
        default=None, metadata=opt("--projects", Path, "projects and departments file (TOML or YAML), applied at start")
    )
    checkpoint_poll_s: float = field(
        default=1.0, metadata=opt("--checkpoint-poll", float, "seconds between looks at running jobs' checkpoint files")
    )
    policy_opts: tuple[str, ...] = field(
        default=(),
        metadata=opt(
            "--policy-opt", str, "NAME=VALUE setting of the policy, e.g. half_life_s=3600 (repeat)", many=True
        ),
    )
    isolation: str = field(
        default_factory=lambda: os.environ.get(ISOLATION_ENV) or "auto",
        metadata=opt(
            "--isolation",
            str,
            "how jobs are kept apart: full (own Unix account, cgroup; needs root), none (the server's account), "
            "auto (full where root)",
        ),
    )
    users: tuple[tuple[str, str], ...] = ()  # factory user -> Unix account (config.toml [users])
    prices: tuple[tuple[str, float], ...] = ()  # GPU model -> money per GPU-hour (config.toml [prices])
    telemetry_s: float = field(
        default=5.0,
        metadata=opt("--telemetry", float, "seconds between GPU readings through NVML (0: none)"),
    )
    history_days: float = field(
        default=30.0, metadata=opt("--history-days", float, "days each GPU's per-minute history is kept")
    )
    log_level: str = field(
        default="info",
        metadata=opt("--log-level", str, "server log: debug, info (every decision, one line each), warning, error"),
    )
    idle_threshold: float = field(
        default=5.0,
        metadata=opt("--idle-threshold", float, "GPU utilisation (percent) below which a job's GPUs count as idle"),
    )
    power_budget_kw: float | None = field(
        default=None,
        metadata=opt(
            "--power-budget-kw", float, "facility power budget: a job that would pass the estimated draw waits"
        ),
    )
    power_base_kw: float = field(
        default=0.0, metadata=opt("--power-base-kw", float, "estimated draw of the floor with nothing held, kW")
    )
    power_per_gpu_w: float = field(
        default=700.0, metadata=opt("--power-per-gpu-w", float, "estimated extra draw of a GPU a job holds, W")
    )
    pool_power_budgets: tuple[str, ...] = field(
        default=(),
        metadata=opt("--pool-power-budget", str, "POOL=KW: a node pool's power budget (repeat)", many=True),
    )
    tls_cert: Path | None = field(default=None, metadata=opt("--tls-cert", Path, "serve HTTPS with this certificate"))
    tls_key: Path | None = field(default=None, metadata=opt("--tls-key", Path, "the private key of --tls-cert"))
    insecure: bool = field(
        default=False,
        metadata=opt("--insecure", _flag, "allow plain HTTP beyond loopback (tokens cross the network in clear)"),
    )
    lease_ttl_s: float = field(
        default=10.0,
        metadata=opt("--lease-ttl", float, "seconds of the leader lease: a standby takes over this long after a crash"),
    )
    no_wait: bool = field(
        default=False,
        metadata=opt("--no-wait", _flag, "exit at once if another server leads the store (default: wait as standby)"),
    )
    executor: str = field(
        default="local", metadata=opt("--executor", str, "where jobs run: local (this host) or ray (a Ray cluster)")
    )
    ray_address: str | None = field(
        default=None, metadata=opt("--ray-address", str, "the Ray cluster's head, e.g. HEAD:6379 (with --executor ray)")
    )
    host: str = field(default="127.0.0.1", metadata=opt("--host", str, "address to listen on"))
    port: int = field(
        default=8470, metadata=opt("--port", int, "port to listen on; 0 picks a free one (see server.json)")
    )

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
        if self.isolation not in ("auto", "full", "none"):
            raise SpecError("isolation", f"must be auto, full or none, got {self.isolation!r}")
        from aifactory.live.executors import EXECUTORS

        if self.executor not in EXECUTORS:  # refused before anything is opened or stored
            raise UnknownName("executor", self.executor, EXECUTORS)
        if not self.lease_ttl_s > 0:
            raise SpecError("lease_ttl", f"must be positive, got {self.lease_ttl_s}")
        if not 0 <= self.telemetry_s <= 3600:
            raise SpecError("telemetry", f"must be 0 (off) to 3600 seconds, got {self.telemetry_s}")
        if not 0 < self.history_days <= 3650:
            raise SpecError("history_days", f"must be more than 0 and at most 3650, got {self.history_days}")
        if self.log_level not in LOG_LEVELS:
            raise UnknownName("log_level", self.log_level, LOG_LEVELS)
        if not 0 <= self.idle_threshold <= 100:
            raise SpecError("idle_threshold", f"must be a percentage 0-100, got {self.idle_threshold}")
        if self.power_budget_kw is not None and not (0 < self.power_budget_kw < 1e7):
            raise SpecError("power_budget_kw", f"must be more than 0 kW, got {self.power_budget_kw}")
        if not (0 <= self.power_base_kw < 1e7) or not (0 <= self.power_per_gpu_w <= 1e5):
            raise SpecError("power_per_gpu_w", "the power estimates must be numbers >= 0")
        self.pool_budgets_w()  # raises for a malformed POOL=KW
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SpecError("tls_cert", "--tls-cert and --tls-key go together")
        self.core()  # an unknown policy option or a bad value is refused here, naming it

    @classmethod
    def chosen(cls, home: Path | None = None, **given: Any) -> LiveSettings:
        """The settings a server starts with: the options given (None: not given), over the home's
        `config.toml` `[floor]` table, over the defaults."""
        home = resolve_home(home)
        config = read_config(home)
        floor = config.floor
        from_file: dict[str, Any] = {
            "db_url": floor.get("db"),
            "policy": floor.get("policy"),
            "placement": floor.get("placement"),
            "policy_opts": tuple(floor.get("policy_opts", ())) or None,
            # The environment may choose too (tests and embedded factories: one person, no tenants).
            "isolation": floor.get("isolation") or os.environ.get(ISOLATION_ENV) or None,
            "users": tuple(sorted(config.users.items())) or None,
            "prices": tuple(sorted(config.prices.items())) or None,
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

    def pool_budgets_w(self) -> tuple[tuple[str, float], ...]:
        """`--pool-power-budget POOL=KW` as (pool, watts); SpecError naming a malformed one."""
        from aifactory.core.power_budget import parse_pool_budgets

        return parse_pool_budgets(self.pool_power_budgets)

    def core(self) -> FactorySettings:
        """The core's settings these live settings choose (the policy's options applied last)."""
        chosen = FactorySettings(
            policy=self.policy,
            placement=self.placement,
            kill_grace_s=self.kill_grace_s,
            preempt_grace_s=self.preempt_grace_s,
            min_runtime_s=self.min_runtime_s,
            power_budget_w=self.power_budget_kw * 1000 if self.power_budget_kw is not None else None,
            power_base_w=self.power_base_kw * 1000,
            power_per_gpu_w=self.power_per_gpu_w,
            pool_power_budgets_w=self.pool_budgets_w(),
        )
        return apply_options(chosen, self.policy_opts)

    @property
    def database_url(self) -> str:
        """`db_url`, or the embedded SQLite database under `home`."""
        return self.db_url or f"sqlite:///{self.home / 'factory.db'}"


METAVARS: dict[Callable[[str], Any], str] = {int: "N", Path: "PATH", memory_mib: "SIZE", milli_cpu: "CORES"}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one SpecError line (the CLI's exit 2), never argparse's usage dump."""

    def error(self, message: str) -> NoReturn:
        raise SpecError("options", message)


def settings_parser(prog: str) -> argparse.ArgumentParser:
    """The server's command line, from LiveSettings' fields: each option, its parser, its help."""
    p = _Parser(prog=prog, description="Run the factory's server in the foreground (Ctrl-C stops it; jobs carry on).")
    for f in fields(LiveSettings):
        o = f.metadata.get("flag")
        if o is None:
            continue
        meta = f.metadata
        plain = meta["many"] or f.default is MISSING or f.default in (None, ())
        shown = "" if plain else f" [default: {f.default}]"
        if meta["parse"] is _flag:  # a switch: present or not
            p.add_argument(meta["flag"], dest=f.name, action="store_const", const=True, help=meta["help"])
            continue
        action = "append" if meta["many"] else "store"
        metavar = METAVARS.get(meta["parse"], "S" if f.name.endswith("_s") else "VALUE")
        p.add_argument(
            meta["flag"], dest=f.name, type=meta["parse"], action=action, metavar=metavar, help=meta["help"] + shown
        )
    return p


def parse_settings(argv: Sequence[str], prog: str) -> LiveSettings:
    """Options given, over the home's config.toml [floor], over the defaults (`LiveSettings.chosen`)."""
    given = vars(settings_parser(prog).parse_args(list(argv)))
    for many in ("policy_opts", "pool_power_budgets"):
        if given.get(many) is not None:
            given[many] = tuple(given[many])
    return LiveSettings.chosen(**given)
