"""What-if variants of a scenario: another policy, more nodes, other quotas, no pools.

A Variant names its changes; `apply_variant` builds the scenario it replays and
`run_variants` replays each, every one on its own fresh cluster.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aifactory.bounded import load_toml, read_bounded
from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError, UnknownName
from aifactory.core.events import NodeJoined
from aifactory.core.factory import FactorySettings
from aifactory.core.placement import get_placement
from aifactory.core.policies import get_policy
from aifactory.core.policies.options import apply_options
from aifactory.core.power_budget import check_pools
from aifactory.core.project import Project
from aifactory.twin.executor import ExecutorSettings
from aifactory.twin.grid import GridSeries
from aifactory.twin.metrics import duration_text
from aifactory.twin.power import PowerSpec
from aifactory.twin.replay import Progress, RunResult, TwinSettings, replay
from aifactory.twin.traces.format import CostModel, Scenario

_NODES = re.compile(r"^([+-]?)(\d+)$")
ProjectOverride = tuple[str, tuple[tuple[str, Any], ...]]  # (project name, ((field, value), ...))
PROJECT_FIELDS = {"quota": float, "weight": float, "limit": float, "pool": str, "department": str}


@dataclass(frozen=True, slots=True)
class Variant:
    policy: str = field(default_factory=lambda: FactorySettings().policy)  # the live factory's default
    placement: str = "pack"
    use_pools: bool = True
    nodes: str | None = None  # "+32" / "-8": nodes added or removed; "400": the node count; "POOL:+8": one pool
    projects: tuple[ProjectOverride, ...] = ()  # field overrides (and additions), by project name
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    policy_opts: tuple[str, ...] = ()  # NAME=VALUE settings of its policy (core.policies.options)
    poweroff_after_s: float | None = None  # idle nodes powered off after this long (None: always on)
    failures_per_gpu_day: float | None = None  # node failures at this rate (None: none)
    repair_s: float = 3 * 3600.0  # how long a failed node is down
    carbon_delay_s: float | None = None  # flexible jobs start in the cleanest hour up to this late
    flexible: tuple[str, ...] = ()  # projects whose jobs are flexible ("all": every project)
    power_budget_w: float | None = None  # the core's facility power budget (estimates from the power model)
    pool_power_budgets_w: tuple[tuple[str, float], ...] = ()  # node pools' budgets (facility W)
    power_cap: float | None = None  # GPUs capped at this fraction of TDP (twin/caps.py)

    @property
    def name(self) -> str:
        parts = [self.policy]
        if self.placement != "pack":
            parts.append(self.placement)
        if not self.use_pools:
            parts.append("no-pools")
        if self.nodes:
            parts.append(f"nodes {self.nodes}")
        if self.projects:
            parts.append("quotas")
        parts += self.policy_opts
        if self.poweroff_after_s is not None:
            parts.append(f"power-off {duration_text(self.poweroff_after_s)}")
        if self.failures_per_gpu_day is not None:
            parts.append("failures")
        if self.carbon_delay_s is not None:
            parts.append(f"carbon-aware {duration_text(self.carbon_delay_s)}")
        if self.power_budget_w is not None:
            parts.append(f"budget {self.power_budget_w / 1000:g} kW")
        if self.pool_power_budgets_w:
            parts.append("pool budgets")
        if self.power_cap is not None:
            parts.append(f"cap {self.power_cap:.0%}")
        return " ".join(parts)


def check_variant(variant: Variant) -> None:
    """Raise UnknownName (with the known names) for an unknown policy or placement."""
    get_policy(variant.policy)
    get_placement(variant.placement)
    apply_options(FactorySettings(policy=variant.policy), variant.policy_opts)
    if variant.nodes is not None:
        parse_nodes(variant.nodes)


def _shares(pools: dict[str, list[NodeSpec]], total: int, change: int) -> dict[str, int]:
    """Split `change` nodes over pools in proportion to their size (largest remainder)."""
    exact = {p: change * len(ns) / total for p, ns in pools.items()}
    out = {p: int(v) for p, v in exact.items()}
    left = change - sum(out.values())
    step = 1 if left > 0 else -1
    for p in sorted(exact, key=lambda q: -abs(exact[q] - out[q]))[: abs(left)]:
        out[p] += step
    return out


def parse_nodes(spec: str) -> tuple[str | None, str, int]:
    """`[POOL:]+N`, `[POOL:]-N` or `[POOL:]N` -> (pool or None, sign, N)."""
    pool, _, amount = spec.rpartition(":")
    match = _NODES.match(amount)
    if match is None:
        raise SpecError("nodes", f"{spec!r} is not +N, -N or N (optionally POOL:+N)")
    return pool or None, match.group(1), int(match.group(2))


def resize(nodes: list[NodeSpec], spec: str) -> list[NodeSpec]:
    """Nodes after `spec`: "+N", "-N" or "N" spread over the pools in proportion to their size,
    or "POOL:+N" (-N, N) for one pool. New nodes copy the first node of their pool."""
    pool, sign, count = parse_nodes(spec)
    pools: dict[str, list[NodeSpec]] = {}
    for node in nodes:
        pools.setdefault(node.pool, []).append(node)
    if pool is not None and pool not in pools:
        raise UnknownName("node pool", pool, pools)
    base = len(pools[pool]) if pool is not None else len(nodes)
    change = {"+": count, "-": -count, "": count - base}[sign]
    if base + change < (0 if pool is not None else 1):
        raise SpecError("nodes", f"{spec}: would leave {base + change} nodes")
    deltas = {p: 0 for p in pools} | ({pool: change} if pool is not None else _shares(pools, len(nodes), change))
    out: list[NodeSpec] = []
    for name, delta in deltas.items():
        mine = pools[name]
        keep = mine[: max(0, len(mine) + min(delta, 0))]
        out += keep + [replace(mine[0], name=f"{name}-x{i}") for i in range(max(delta, 0))]  # same capacity
    return out


def read_projects(path: str | Path) -> tuple[ProjectOverride, ...]:
    """Project overrides from TOML: `[projects.NAME]` tables of quota, weight, limit, pool, department."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("projects", f"no such file: {path}")
    try:
        data = load_toml(read_bounded(path, "projects"), "projects", str(path))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError("projects", f"{path}: not valid TOML ({exc})") from None
    table = data.get("projects")
    if not isinstance(table, dict) or set(data) - {"projects"}:
        raise SpecError("projects", f"{path}: expected only [projects.NAME] tables")
    return tuple((name, _override(name, fields)) for name, fields in table.items())


def _override(name: str, fields: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(fields, dict):
        raise SpecError(f"projects.{name}", "must be a table")
    values: list[tuple[str, Any]] = []
    for key, value in fields.items():
        kind = PROJECT_FIELDS.get(key)
        if kind is None:
            raise SpecError(f"projects.{name}.{key}", f"unknown field (known: {', '.join(PROJECT_FIELDS)})")
        if kind is float and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise SpecError(f"projects.{name}.{key}", f"must be a number >= 0, got {value!r}")
        if kind is str and not isinstance(value, str):
            raise SpecError(f"projects.{name}.{key}", f"must be a string, got {value!r}")
        values.append((key, float(value) if kind is float else (value or None)))  # pool = "": no pool
    return tuple(values)


def merge_projects(base: list[Project], overrides: Sequence[ProjectOverride]) -> list[Project]:
    """Copies of `base` with each override's fields set; an unknown name adds a project."""
    out = {p.name: replace(p) for p in base}
    for name, fields in overrides:
        project = out.setdefault(name, Project(name=name))
        for key, value in fields:
            setattr(project, key, value)
    return list(out.values())


def apply_variant(scenario: Scenario, variant: Variant, grid: GridSeries | None = None) -> Scenario:
    nodes = resize(scenario.nodes, variant.nodes) if variant.nodes else scenario.nodes
    projects = scale_quotas(scenario.projects, scenario.nodes, nodes, variant.projects)
    projects = merge_projects(projects, variant.projects)
    out = Scenario(scenario.name, scenario.jobs, nodes, projects, scenario.departments)
    if variant.failures_per_gpu_day is not None:
        from aifactory.twin.failures import with_failures

        out = with_failures(out, variant.failures_per_gpu_day, variant.repair_s)
    if variant.carbon_delay_s is not None:
        out = carbon_aware(out, variant, grid)
    if variant.power_cap is not None:
        from aifactory.twin.caps import time_factor

        slower = time_factor(variant.power_cap)
        jobs = [
            replace(j, spec=replace(j.spec, duration_s=j.spec.duration_s * slower)) if j.spec.duration_s else j
            for j in out.jobs
        ]
        out = replace(out, jobs=jobs)
    return out


def carbon_aware(scenario: Scenario, variant: Variant, grid: GridSeries | None) -> Scenario:
    """Flexible jobs submitted at the cleanest hour within `carbon_delay_s` of their own time."""
    if grid is None:
        raise SpecError("carbon-aware", "needs the grid's intensity over time (--grid-csv)")
    delay = variant.carbon_delay_s or 0.0
    every = "all" in variant.flexible
    start = min((j.submit_time for j in scenario.jobs), default=0.0)
    jobs = [
        replace(j, submit_time=start + grid.cleanest_start(j.submit_time - start, delay))
        if every or j.spec.project in variant.flexible
        else j
        for j in scenario.jobs
    ]
    return replace(scenario, jobs=jobs)


def scale_quotas(
    projects: list[Project], before: list[NodeSpec], after: list[NodeSpec], overrides: Sequence[ProjectOverride]
) -> list[Project]:
    """Quotas that grow and shrink with the cluster: a project's quota scales with its pool's GPUs
    (the cluster's, without a pool), unless the variant sets that project's quota itself."""
    if before is after:
        return projects

    def gpus(nodes: list[NodeSpec]) -> dict[str | None, int]:
        out: dict[str | None, int] = {None: sum(n.gpu_count for n in nodes)}
        for n in nodes:
            out[n.pool] = out.get(n.pool, 0) + n.gpu_count
        return out

    old, new = gpus(before), gpus(after)
    given = {name for name, fields in overrides if any(key == "quota" for key, _ in fields)}
    out = []
    for p in projects:
        where = p.pool if p.pool in old else None
        if p.name in given or not p.quota or not old.get(where):
            out.append(p)
            continue
        factor = new.get(where, 0) / old[where]
        by_model = {m: q * factor for m, q in p.quota_by_model.items()} if p.quota_by_model else p.quota_by_model
        out.append(replace(p, quota=p.quota * factor, quota_by_model=by_model))
    return out


def settings_for(
    variant: Variant,
    base: FactorySettings | None = None,
    power: PowerSpec | None = None,
    boot_s: float = 300.0,
    gpus: int = 0,
) -> TwinSettings:
    factory = replace(base or FactorySettings(), policy=variant.policy, placement=variant.placement)
    factory = apply_options(replace(factory, use_pools=variant.use_pools), variant.policy_opts)
    if variant.power_cap is not None and power is not None:
        from aifactory.twin.caps import SOURCE, power_factor

        capped = power.busy_w * power_factor(variant.power_cap)
        power = replace(power, busy_w=capped, sources={**power.sources, "cap": SOURCE})
    if variant.power_budget_w is not None or variant.pool_power_budgets_w:
        if power is None:
            raise SpecError("power-budget-kw", "a power budget needs the power model's estimates")
        # The core estimates as the power model draws: every GPU slot idle, plus each held GPU's extra.
        # Budgets are the facility's; the core counts IT power, so they are divided by the PUE.
        factory = replace(
            factory,
            power_budget_w=variant.power_budget_w / power.pue if variant.power_budget_w is not None else None,
            pool_power_budgets_w=tuple((pool, w / power.pue) for pool, w in variant.pool_power_budgets_w),
            power_base_w=gpus * (power.host_w + power.idle_w),
            power_per_gpu_w=power.held_w - power.idle_w,
        )
    return TwinSettings(
        factory=factory,
        executor=variant.executor,
        power=power,
        poweroff_after_s=variant.poweroff_after_s,
        boot_s=boot_s,
    )


def run_variants(
    scenario: Scenario,
    variants: Sequence[Variant],
    cost_model: CostModel | None = None,
    progress: Callable[[Variant], Progress | None] | None = None,
    base: FactorySettings | None = None,
    power: PowerSpec | None = None,
    boot_s: float = 300.0,
) -> list[RunResult]:
    """Replay every variant (checked first, so a typo fails before any long replay), each on
    `base` settings (e.g. the floor's own) with its policy, placement and options."""
    pools = {n.pool for n in scenario.nodes} | {
        e.spec.pool for _, e in scenario.node_events if isinstance(e, NodeJoined)
    }
    for v in variants:
        check_variant(v)
        check_pools(v.pool_power_budgets_w, pools)
    results = []
    for v in variants:
        applied = apply_variant(scenario, v, power.grid_series if power is not None else None)
        result = replay(
            applied,
            settings_for(v, base, power, boot_s, sum(n.gpu_count for n in applied.nodes)),
            cost_model,
            progress(v) if progress is not None else None,
        )
        result.name = v.name
        if v.carbon_delay_s is not None:  # the wait a flexible job chose, before the queue's own
            moved = [b.submit_time - a.submit_time for a, b in zip(scenario.jobs, applied.jobs, strict=True)]
            deferred = [m for m in moved if m > 0]
            result.summary["deferred_jobs"] = len(deferred)
            result.summary["deferred_s_mean"] = sum(moved) / len(moved) if moved else 0.0
        results.append(result)
    return results


COMPARE = (
    ("first_wait_s_mean", "mean wait to first start"),
    ("first_wait_s_p95", "p95 wait to first start"),
    ("queued_s_mean", "mean time queued (all)"),
    ("jct_s_mean", "mean JCT"),
    ("jct_s_p99", "p99 JCT"),
    ("slowdown_mean", "slowdown"),
    ("makespan_s", "makespan"),
    ("utilisation", "utilisation"),
    ("jain_slowdown", "Jain"),
    ("preemptions", "preemptions"),
    ("lost_gpu_hours", "GPU-h lost"),
    ("goodput", "goodput"),
    ("deferred_s_mean", "deferred start (mean)"),
    ("energy_kwh", "energy (kWh)"),
    ("peak_kw", "peak power (kW)"),
    ("tco2e", "tCO2e"),
    ("energy_usd", "energy cost (USD)"),
)


def figure_text(key: str, value: Any) -> str:
    """A figure as the tables print it: durations (keys `..._s` or `..._s_mean` and the like) in s,
    min, h or d."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool) and (key.endswith("_s") or "_s_" in key):
        return duration_text(float(value))
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def comparison(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One row per variant: the headline figures, the GPUs and the replay's own cost."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"variant": r.name}
        row.update({key: r.summary.get(key) for key, _ in COMPARE})
        row["gpus"] = r.recorder.total_gpus
        row["gpu_hours"] = r.summary.get("gpu_hours")
        row["rejected"] = r.summary["rejected"]
        row["wall_s"] = r.wall_s
        row["events"] = r.events
        rows.append(row)
    return rows
