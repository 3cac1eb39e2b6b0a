"""`aifactory twin ...`: replay traces on the digital twin and compare what-ifs."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aifactory.cli.apps import new_app

if TYPE_CHECKING:  # the twin loads on first use: `aifactory --help` stays quick
    from aifactory.twin.whatif import Variant

app = new_app(no_args_is_help=True)

SHARED = "@shared"  # policy suffix: this variant ignores the node pools (one shared pool with quotas)


def _also(variants: list[Variant], **what_if: Any) -> list[Variant]:
    """Each variant, followed by itself under the what-if (`Variant` fields): both are replayed."""
    return [w for v in variants for w in (v, replace(v, **what_if))]


def _variants(
    policies: list[str],
    placement: str,
    nodes: Sequence[str | None],
    projects: Path | None,
    no_pools: bool,
    policy_opts: Sequence[str] = (),
) -> list[Any]:
    """One variant per cluster size and policy (sizes outer: a size table reads down its policies)."""
    from aifactory.core.errors import SpecError
    from aifactory.core.factory import FactorySettings
    from aifactory.core.policies.options import options_of
    from aifactory.twin.whatif import Variant, check_variant, read_projects

    overrides = read_projects(projects) if projects is not None else ()
    out = []
    names = [name.removesuffix(SHARED) for name in policies or [FactorySettings().policy]]
    for item in policy_opts:  # each option goes to the variants whose policy has it
        if not any(item.partition("=")[0].strip() in options_of(name) for name in names):
            known = sorted({o for name in names for o in options_of(name)})
            raise SpecError("policy_opt", f"{item!r}: no policy here has it (known: {', '.join(known) or 'none'})")
    for size in nodes or [None]:
        for name in policies or [FactorySettings().policy]:
            shared = name.endswith(SHARED)
            policy = name.removesuffix(SHARED)
            mine = tuple(o for o in policy_opts if o.partition("=")[0].strip() in options_of(policy))
            v = Variant(
                policy=policy,
                placement=placement,
                use_pools=not (no_pools or shared),
                nodes=size,
                projects=overrides,
                policy_opts=mine,
            )
            check_variant(v)
            out.append(v)
    return out


def _clean(value: Any) -> Any:
    """JSON has no NaN: missing figures become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _window(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    from aifactory.twin.scenarios import parse_when

    return (
        None if since is None else parse_when(since, "since"),
        None if until is None else parse_when(until, "until"),
    )


def _scenario(
    trace: str, limit: int | None, store: str | None, since: str | None, until: str | None, gpus_per_node: int = 8
) -> Any:
    """The named trace or trace file, or `eventlog`: the floor's own history, read from its store."""
    from aifactory.twin.scenarios import load_scenario

    if trace != "eventlog":
        return load_scenario(trace, limit, gpus_per_node)
    from aifactory.live import history
    from aifactory.live.settings import LiveSettings

    scenario = history.open_and_load(store or LiveSettings().database_url, *_window(since, until))
    if limit is not None:
        scenario.jobs = scenario.jobs[:limit]
    return scenario


def _writable(path: Path, field: str) -> None:
    """Fail before a long replay, not after it, when the output cannot be written."""
    from aifactory.core.errors import SpecError

    if not path.parent.is_dir():
        raise SpecError(field, f"{path}: no such directory {path.parent}")
    if path.is_dir():
        raise SpecError(field, f"{path} is a directory")


def _series(result: Any) -> dict[str, Any]:
    """The sampled time series: time (s), GPUs allocated, jobs pending, fragmentation (0..1)."""
    s = result.samples
    return {
        "period_s": s.period_s,
        "at": s.at,
        "allocated": s.allocated,
        "pending": s.pending,
        "fragmentation": s.fragmentation,
    }


@app.command("run")
def run(
    trace: str = typer.Option("philly", help="philly, openb, eventlog, or a .csv/.parquet trace in our format"),
    policy: list[str] = typer.Option(
        [],
        "--policy",
        help=f"policy to replay (repeat to compare; default: the floor's); NAME{SHARED} ignores node pools",
    ),
    placement: str | None = typer.Option(None, help="placement policy (default: the trace's floor's, else pack)"),
    nodes: list[str] = typer.Option(
        [],
        help="cluster sizes to replay (repeat, or a comma list): N nodes in all, +N / -N (spread over pools by "
        "size), POOL:+N for one pool, or a range FROM..TO:STEP of node counts",
    ),
    growth: str | None = typer.Option(
        None, help="arrival rate growing over the trace: FACTORx/PERIOD, e.g. 2x/180d (compute doubling every 6 months)"
    ),
    target_wait: str | None = typer.Option(
        None, "--target-wait", help="say the smallest size that meets it, e.g. p95<1h (STAT: mean, p50, p95, p99)"
    ),
    power_gpu: str | None = typer.Option(
        None, help="GPU (plan catalogue) that prices the nodes' power (default: theirs if known, else P100)"
    ),
    power_off: str | None = typer.Option(
        None, "--power-off", help="what-if: also replay with idle nodes powered off after this long, e.g. 30min"
    ),
    boot: str = typer.Option("5min", help="with --power-off: how long a node takes to boot"),
    failures: str | None = typer.Option(
        None, help="what-if: also replay with node failures: llama3 (the published rate) or per GPU-day"
    ),
    repair: str = typer.Option("3h", help="with --failures: how long a failed node is down"),
    checkpoint_every: str | None = typer.Option(
        None, "--checkpoint-every", help="jobs checkpoint this often (default: on every stop, nothing lost)"
    ),
    pue: float | None = typer.Option(None, help="power usage effectiveness (default 1.1, hyperscale)"),
    grid: float | None = typer.Option(None, help="grid carbon intensity, gCO2e/kWh (default 480, world 2023)"),
    usd_per_kwh: float | None = typer.Option(None, help="price of facility energy, USD per kWh"),
    grid_csv: Path | None = typer.Option(
        None, "--grid-csv", help="grid intensity over time: CSV offset_h,g_per_kwh (all offsets < 24: a daily profile)"
    ),
    carbon_aware: str | None = typer.Option(
        None, "--carbon-aware", help="what-if: flexible jobs start in the cleanest hour up to this late, e.g. 6h"
    ),
    flexible: list[str] = typer.Option(
        [], "--flexible", help="with --carbon-aware: a project whose jobs may wait (repeat; 'all': every project)"
    ),
    power_cap: float | None = typer.Option(
        None, "--power-cap", help="what-if: also replay with GPUs capped at this fraction of TDP (0.6 to 1)"
    ),
    power_budget_kw: float | None = typer.Option(
        None, "--power-budget-kw", help="what-if: also replay under this facility power budget (a core rule)"
    ),
    pool_power_budget: list[str] = typer.Option(
        [],
        "--pool-power-budget",
        help="what-if: POOL=KW, a node pool's power budget (repeat; with or without the factory's)",
    ),
    gpu_util: float = typer.Option(
        1.0, help="mean utilisation of held GPUs (power rises linearly from idle to busy with it)"
    ),
    projects: Path | None = typer.Option(
        None, help="TOML of \\[projects.NAME] tables: quota, weight, limit, pool overrides"
    ),
    no_pools: bool = typer.Option(False, "--no-pools", help="one shared pool with quotas instead of node pools"),
    policy_opt: list[str] = typer.Option(
        [], "--policy-opt", help="NAME=VALUE setting of the policies that have it, e.g. half_life_s=3600 (repeat)"
    ),
    report: Path | None = typer.Option(None, help="write a self-contained HTML report here"),
    as_json: bool = typer.Option(False, "--json", help="print the figures as JSON"),
    limit: int | None = typer.Option(None, min=1, help="replay only the first N jobs"),
    store: str | None = typer.Option(None, help="store URL for --trace eventlog (default: the live factory's)"),
    since: str | None = typer.Option(None, help="eventlog: jobs submitted from (ISO date or epoch s)"),
    until: str | None = typer.Option(None, help="eventlog: jobs submitted before (ISO date or epoch s)"),
    gpus_per_node: int = typer.Option(8, min=1, help="node size for a trace file"),
    work_gpu: str = typer.Option("H100", help="GPU (plan catalogue) for rows that give work (FLOPs), not time"),
    mfu: float | None = typer.Option(None, help="MFU for rows that give work (default: the GPU generation's)"),
) -> None:
    """Replay a trace under each policy and compare waits, JCTs, utilisation and fairness."""
    from aifactory.twin.whatif import comparison

    if report is not None:
        _writable(report, "report")
    scenario = _scenario(trace, limit, store, since, until, gpus_per_node)
    # A floor's own history replays by default under the settings it ran with.
    floor = scenario.settings
    policies = policy or ([floor.policy] if floor is not None else [])
    chosen = placement or (floor.placement if floor is not None else "pack")
    from aifactory.core.errors import SpecError
    from aifactory.twin.sizing import expand_nodes, grow, parse_growth, parse_target

    sizes = expand_nodes(nodes)
    target = parse_target(target_wait) if target_wait is not None else None
    if growth is not None:
        scenario = grow(scenario, *parse_growth(growth))
    variants = _variants(policies, chosen, sizes, projects, no_pools, policy_opt)
    from aifactory.twin.sizing import parse_duration

    boot_s = parse_duration(boot, "boot")
    if power_off is not None:
        after = parse_duration(power_off, "power-off")
        if after <= 0:
            raise SpecError("power-off", f"{power_off!r}: a node must be idle for some time before it goes off")
        variants = _also(variants, poweroff_after_s=after)
    if checkpoint_every is not None:
        every = parse_duration(checkpoint_every, "checkpoint-every")
        if every <= 0:
            raise SpecError("checkpoint-every", f"{checkpoint_every!r}: must be longer than 0")
        variants = [replace(v, executor=replace(v.executor, checkpoint_every_s=every)) for v in variants]
    if carbon_aware is not None:
        if grid_csv is None:
            raise SpecError("carbon-aware", "needs the grid's intensity over time: give --grid-csv")
        delay = parse_duration(carbon_aware, "carbon-aware")
        marked = tuple(flexible) or ("all",)
        variants = _also(variants, carbon_delay_s=delay, flexible=marked)
    if power_cap is not None:
        from aifactory.twin.caps import check_cap

        check_cap(power_cap)
        variants = _also(variants, power_cap=power_cap)
    if power_budget_kw is not None or pool_power_budget:
        from aifactory.core.power_budget import parse_pool_budgets

        if power_budget_kw is not None and not 0 < power_budget_kw < 1e7:
            raise SpecError("power-budget-kw", f"must be more than 0 kW, got {power_budget_kw}")
        pools = parse_pool_budgets(pool_power_budget)
        budget = power_budget_kw * 1000 if power_budget_kw is not None else None
        variants = _also(variants, power_budget_w=budget, pool_power_budgets_w=pools)
    if failures is not None:
        from aifactory.twin.failures import parse_rate

        rate, repair_s = parse_rate(failures), parse_duration(repair, "repair")
        variants = _also(variants, failures_per_gpu_day=rate, repair_s=repair_s)
    power = _power(scenario, power_gpu, pue, grid, usd_per_kwh, gpu_util)
    if grid_csv is not None:
        from aifactory.twin.grid import read_grid

        power = replace(power, grid_series=read_grid(grid_csv))
    cost_model = None
    if any(j.spec.duration_s is None for j in scenario.jobs):
        from aifactory.twin.costmodel import flops_cost_model

        cost_model = flops_cost_model(work_gpu, mfu)
    results = _run_with_progress(scenario, variants, cost_model, quiet=as_json, power=power, boot_s=boot_s)
    rows = comparison(results)
    if report is not None:
        from aifactory.twin.report import write_report

        write_report(results, report, title=f"aifactory twin: {scenario.name}")
    from aifactory.twin.sizing import rejection_reasons, smallest_meeting

    reasons = {r.name: rejection_reasons(r) for r in results}
    best = smallest_meeting(results, target) if target is not None else None
    if as_json:
        out: dict[str, Any] = {
            "trace": scenario.name,
            "jobs": len(scenario.jobs),
            "growth": growth,
            "variants": [
                _clean(
                    {
                        **row,
                        "settings": asdict(r.settings),
                        "summary": r.summary,
                        "series": _series(r),
                        "rejected_reasons": [asdict(x) for x in reasons[r.name]],
                    }
                )
                for row, r in zip(rows, results, strict=True)
            ],
        }
        if target is not None:
            out["target_wait"] = {"stat": target.stat, "limit_s": target.limit_s}
            out["smallest_meeting_target"] = (
                None if best is None else {"variant": best.name, "gpus": best.recorder.total_gpus}
            )
        typer.echo(json.dumps(out, indent=1))
        return
    if len(sizes) > 1:
        _print_sizes(scenario.name, len(scenario.jobs), rows)
    else:
        _print_table(scenario.name, len(scenario.jobs), rows)
    for name, why in reasons.items():
        for reason in why:
            typer.echo(f"{name}: {reason.count:,} job(s) refused: {reason.example}")
    if target is not None:
        found = f"{best.name} ({best.recorder.total_gpus:,.0f} GPUs)" if best is not None else "none of these sizes"
        typer.echo(f"smallest size meeting {target.text} with no job refused: {found}")
    if report is not None:
        typer.echo(f"report: {report}")


def _power(
    scenario: Any, gpu: str | None, pue: float | None, grid: float | None, usd: float | None, util: float = 1.0
) -> Any:
    """The power model of the replay: the nodes priced as `gpu` (or their own model, if the catalogue knows it)."""
    from aifactory.plan.catalog import UnknownGpu, load_catalog
    from aifactory.twin.power import power_spec

    catalog = load_catalog()
    if gpu is None:
        models = {n.gpu_model for n in scenario.nodes}
        gpu = "P100"
        if len(models) == 1:
            with contextlib.suppress(UnknownGpu):  # "virtual" GPUs (Philly, openb): priced as the P100s of their day
                gpu = catalog.gpu(next(iter(models))).name
    return power_spec(gpu, pue, grid, usd, catalog, util)


def _run_with_progress(
    scenario: Any, variants: list[Any], cost_model: Any, quiet: bool, power: Any = None, boot_s: float = 300.0
) -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from aifactory.twin.whatif import run_variants

    if quiet:
        return run_variants(scenario, variants, cost_model, base=scenario.settings, power=power, boot_s=boot_s)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as bar:

        def progress_for(variant: Any) -> Any:
            task = bar.add_task(variant.name, total=len(scenario.jobs))
            return lambda done, total: bar.update(task, completed=done)

        return run_variants(
            scenario, variants, cost_model, progress=progress_for, base=scenario.settings, power=power, boot_s=boot_s
        )


def _print_table(name: str, jobs: int, rows: list[dict[str, Any]]) -> None:
    """One column per variant, one row per figure (fits a terminal for a few variants)."""
    from rich.console import Console
    from rich.table import Table

    from aifactory.twin.whatif import COMPARE, figure_text

    table = Table(title=f"{name}: {jobs:,} jobs")
    table.add_column("")
    for row in rows:
        table.add_column(row["variant"], justify="right")
    lines = [("gpus", "GPUs"), *COMPARE, ("rejected", "rejected"), ("wall_s", "replay s")]
    for key, label in lines:
        table.add_row(label, *(figure_text(key, row[key]) for row in rows))
    Console().print(table)


def _print_sizes(name: str, jobs: int, rows: list[dict[str, Any]]) -> None:
    """One row per variant (sizes down the page): what a buyer compares."""
    from rich.console import Console
    from rich.table import Table

    from aifactory.twin.whatif import figure_text

    table = Table(title=f"{name}: {jobs:,} jobs, against cluster size")
    keys = [
        ("variant", "variant"),
        ("gpus", "GPUs"),
        ("first_wait_s_mean", "mean wait"),
        ("first_wait_s_p95", "p95 wait"),
        ("jct_s_mean", "mean JCT"),
        ("utilisation", "utilisation"),
        ("gpu_hours", "GPU-h used"),
        ("energy_kwh", "energy (kWh)"),
        ("energy_usd", "energy cost"),
        ("rejected", "refused"),
    ]
    for _, label in keys:
        table.add_column(label, justify="left" if label == "variant" else "right")
    for row in rows:
        table.add_row(*(figure_text(k, row.get(k)) if k != "variant" else str(row[k]) for k, _ in keys))
    Console().print(table)


@app.command("calibrate")
def calibrate(
    store: str | None = typer.Option(None, help="store URL (default: the live factory's)"),
    since: str | None = typer.Option(None, help="telemetry from (ISO date or epoch s)"),
    until: str | None = typer.Option(None, help="telemetry before (ISO date or epoch s)"),
    out: Path | None = typer.Option(None, help="where to write the fit (default: $AIFACTORY_HOME/calibrated.toml)"),
    as_json: bool = typer.Option(False, "--json", help="print the fits as JSON"),
) -> None:
    """Fit each GPU model's idle and busy power from the floor's telemetry, for the twin's power model."""
    from aifactory.config import resolve_home
    from aifactory.core.errors import SpecError
    from aifactory.live.settings import LiveSettings
    from aifactory.live.store import Store
    from aifactory.twin.calibrate import fit, to_toml

    url = store or LiveSettings().database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise SpecError("store", f"no live store at {url} (opening it would create an empty one)")
    with Store(url) as db:
        models = {n.name: n.gpu_model for n in db.load_nodes()}
        samples = db.gpu_samples(*_window(since, until))
    fits = fit((models.get(s.node, "unknown"), s.utilization, s.power_w) for s in samples)
    target = out or resolve_home() / "calibrated.toml"
    _writable(target, "out")
    target.write_text(to_toml(fits, "this factory's telemetry"))
    if as_json:
        typer.echo(json.dumps({"written": str(target), "fits": [asdict(f) for f in fits.values()]}, indent=1))
        return
    for f in fits.values():
        typer.echo(
            f"{f.model}: idle {f.idle_w:.0f} W, busy {f.busy_w:.0f} W from {f.samples:,} GPU-minutes (R^2 {f.r2:.3f})"
        )
    typer.echo(f"written: {target} (the plan and the twin read it over the catalogue)")


@app.command("convert")
def convert(
    source: str = typer.Argument(..., help="philly, openb, eventlog, or a trace file in our format"),
    out: Path = typer.Argument(..., help="where to write: .csv or .parquet (and its floor file beside it)"),
    limit: int | None = typer.Option(None, min=1, help="only the first N jobs"),
    store: str | None = typer.Option(None, help="store URL for eventlog (default: the live factory's)"),
    since: str | None = typer.Option(None, help="eventlog: jobs submitted from (ISO date or epoch s)"),
    until: str | None = typer.Option(None, help="eventlog: jobs submitted before (ISO date or epoch s)"),
) -> None:
    """Write a trace in our format (docs/trace_format.md) and its floor file (NAME.floor.yaml: nodes,
    projects, departments) from Philly, openb, a trace file or the live event log."""
    from aifactory.core.errors import SpecError
    from aifactory.live.history import export

    if out.suffix not in (".csv", ".parquet"):  # before any store or trace is read
        raise SpecError("out", f"{out}: the name must end in .csv or .parquet")
    _writable(out, "out")
    scenario = _scenario(source, limit, store, since, until)
    _, floor = export(scenario, out)
    typer.echo(f"wrote {len(scenario.jobs):,} jobs to {out} and the floor to {floor}")


def export_trace(
    out: Path = typer.Argument(..., help="where to write: .csv or .parquet (and NAME.floor.yaml beside it)"),
    store: str | None = typer.Option(None, help="store URL (default: the live factory's)"),
    since: str | None = typer.Option(None, help="jobs submitted from (ISO date or epoch s)"),
    until: str | None = typer.Option(None, help="jobs submitted before (ISO date or epoch s)"),
) -> None:
    """Export the floor's history as a trace the twin replays: `aifactory twin run --trace OUT`."""
    convert("eventlog", out, None, store, since, until)
