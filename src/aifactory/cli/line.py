"""CLI commands of the production line: datasets, pipelines (`line run`), models and their aliases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aifactory.cli.apps import new_app
from aifactory.cli.text import json_text

if TYPE_CHECKING:
    from rich.console import Console

    from aifactory.cli.progress import PipelineProgress
    from aifactory.line.pipeline import Pipeline
    from aifactory.line.registry import ModelVersion
    from aifactory.line.runner import RunResult

datasets_app = new_app(help="Versioned datasets: list, show, create.", invoke_without_command=True)
line_app = new_app(help="Run production-line pipelines.", no_args_is_help=True)
models_app = new_app(help="The model registry: versions, aliases, promote, rollback.", invoke_without_command=True)

HomeOpt = typer.Option(None, "--home", help="factory home (default: $AIFACTORY_HOME or ~/.aifactory)")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.add_typer(datasets_app, name="datasets")
    app.add_typer(line_app, name="line")
    app.add_typer(models_app, name="models")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _console() -> Console:
    from rich.console import Console

    return Console(markup=False, emoji=False)  # names and sources are user text, not rich markup


# -- datasets -------------------------------------------------------------------------------


JsonOpt = typer.Option(False, "--json", help="Print JSON (for scripts) instead of a table.")


@datasets_app.callback()
def datasets_list(ctx: typer.Context, home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """List datasets (latest version of each)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from aifactory.line.datasets import Datasets

    ds = Datasets(home)
    if as_json:
        typer.echo(json_text({name: ds.versions(name) for name in ds.names()}))
        return
    table = Table(
        "dataset", "versions", "latest", "kind", "rows", "features", "task", "sha256", "source", "created (UTC)"
    )
    for name in ds.names():
        versions = ds.versions(name)
        v = versions[-1]
        task = v.schema.task if v.schema is not None else "-"
        table.add_row(
            name,
            str(len(versions)),
            v.ref,
            v.kind,
            str(v.rows),
            str(v.features),
            task,
            v.sha256[:12],
            v.source,
            _when(v.created_at),
        )
    _console().print(table)


@datasets_app.command("show")
def datasets_show(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION"), home: Path | None = HomeOpt, as_json: bool = JsonOpt
) -> None:
    """One dataset version and the chain of versions it comes from."""
    import numpy as np
    from rich.table import Table

    from aifactory.line.datasets import Datasets

    ds = Datasets(home)
    v = ds.resolve(ref)
    if as_json:
        chain = [v]
        while chain[-1].parent is not None:
            chain.append(ds.get(v.name, chain[-1].parent))
        typer.echo(json_text({"version": v, "lineage": chain[1:]}))
        return
    console = _console()
    console.print(f"{v.ref}  {v.kind}  rows {v.rows}  features {v.features}  source {v.source}")
    console.print(f"sha256 {v.sha256}\nstored {v.path}\ncreated {_when(v.created_at)} UTC")
    if v.kind == "files":
        files = ds.manifest(v)
        console.print(f"files {len(files)}, {sum(f['size'] for f in files)} bytes; first: {files[0]['path']}")
    else:
        schema = ds.schema(v)
        columns = Table("column", "type", "role", title=f"schema ({schema.task})")
        for c in schema.columns:
            columns.add_row(c.name, c.type + ("?" if c.nullable else ""), "target" if c.name in schema.target else "")
        console.print(columns)
        if schema.task == "classification":
            labels, counts = np.unique(ds.load_table(v).column(schema.target[0]).to_numpy(), return_counts=True)
            console.print("labels " + "  ".join(f"{int(lbl)}:{int(c)}" for lbl, c in zip(labels, counts, strict=True)))
    table = Table("version", "parent", "rows", "sha256", "source", title="lineage")
    current = v
    while True:
        table.add_row(
            str(current.version), str(current.parent or "-"), str(current.rows), current.sha256[:12], current.source
        )
        if current.parent is None:
            break
        current = ds.get(v.name, current.parent)
    console.print(table)


@datasets_app.command("create")
def datasets_create(
    name: str = typer.Argument(..., help="dataset name"),
    file: Path | None = typer.Option(None, "--file", help="CSV, Parquet, .npz or .npy file"),
    sklearn: str | None = typer.Option(None, "--sklearn", help="a scikit-learn bundled dataset, e.g. digits"),
    folder: Path | None = typer.Option(None, "--dir", help="a directory of files (images, text shards, ...)"),
    target: list[str] | None = typer.Option(
        None, "--target", help="the target column (repeat for several; default: target, label or y)"
    ),
    task: str | None = typer.Option(None, "--task", help="classification, regression or none (default: guessed)"),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Snapshot a file, a directory or a bundled dataset as the next version of NAME."""
    from aifactory.core.errors import SpecError
    from aifactory.line.datasets import Datasets

    if sum(x is not None for x in (file, sklearn, folder)) != 1:
        raise SpecError("source", "give exactly one of --file, --dir or --sklearn")
    if task is not None and task not in ("classification", "regression", "none"):
        raise SpecError("task", f"must be classification, regression or none, got {task!r}")
    if (target or task) and file is None:
        raise SpecError("target", "--target and --task apply to --file")
    ds = Datasets(home)
    if file is not None:
        v = ds.create_from_file(name, file, target or None, task)  # type: ignore[arg-type]
    elif folder is not None:
        v = ds.create_from_dir(name, folder)
    else:
        v = ds.create_from_sklearn(name, str(sklearn))
    if as_json:
        typer.echo(json_text(v))
        return
    typer.echo(f"{v.ref}  {v.kind}  rows {v.rows}  features {v.features}  sha256 {v.sha256[:12]}")


# -- pipelines ------------------------------------------------------------------------------


@line_app.command("run")
def line_run(
    spec: Path = typer.Argument(..., help="pipeline YAML file"),
    home: Path | None = HomeOpt,
    on: str = typer.Option(
        "auto", "--on", help="where steps run: auto (the running server, else embedded), server, embedded, local"
    ),
    gpus: int = typer.Option(
        4, "--gpus", help="virtual GPUs of the embedded factory (0: the real ones, found with NVML)"
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="run every step even if a cached result exists"),
    as_json: bool = typer.Option(False, "--json", help="Print the run (outputs, cached steps, lineage) as JSON."),
) -> None:
    """Run a pipeline: every step a job on the floor, with live per-epoch metrics."""
    import asyncio

    from aifactory.cli.progress import PipelineProgress
    from aifactory.core.errors import SpecError
    from aifactory.line import home as line_home
    from aifactory.line.pipeline import load_pipeline, validate

    if on not in ("auto", "server", "embedded", "local"):
        raise SpecError("on", f"must be auto, server, embedded or local, got {on!r}")
    pipeline = load_pipeline(spec)
    order = validate(pipeline)
    where = line_home(home)
    if on == "auto":
        on = "server" if (where / "server.json").is_file() else "embedded"
    if as_json:
        typer.echo(json_text(asyncio.run(_run_pipeline(pipeline, where, on, gpus, not no_cache, None))))
        return
    console = _console()
    progress = PipelineProgress(console, [s.name for s in order], title=f"pipeline {pipeline.name} ({on})")
    with progress:
        result = asyncio.run(_run_pipeline(pipeline, where, on, gpus, not no_cache, progress))
    console.print(f"run {result.run_id} finished in {result.seconds:.1f}s; cached: {', '.join(result.cached) or '-'}")
    if "deploy" in result.outputs:
        console.print(f"gate: {result.outputs['deploy'].get('gate_reason', '')}")


@line_app.command("flywheel")
def line_flywheel(
    spec: Path = typer.Argument(..., help="pipeline YAML file to run when the trigger fires"),
    home: Path | None = HomeOpt,
    on: str = typer.Option("auto", "--on", help="where steps run: auto, server, embedded, local"),
    min_rows: int = typer.Option(500, "--min-rows", help="retrain after this many new labelled rows"),
    accuracy_below: float = typer.Option(0.9, "--accuracy-below", help="retrain when live accuracy drops below"),
    window: int = typer.Option(200, "--window", help="labelled answers live accuracy is measured over"),
    check: bool = typer.Option(False, "--check", help="only say whether the trigger fires; change nothing"),
    gpus: int = typer.Option(
        4, "--gpus", help="virtual GPUs of the embedded factory (0: the real ones, found with NVML)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the decision, the new versions and the run as JSON."),
) -> None:
    """One turn of the flywheel: if the trigger fires, labelled feedback becomes the next dataset version
    and the pipeline runs (train -> evaluate -> register -> gate)."""
    import asyncio

    from aifactory.cli.progress import PipelineProgress
    from aifactory.line import home as line_home
    from aifactory.line.flywheel import Flywheel, TriggerSettings
    from aifactory.line.pipeline import load_pipeline, validate
    from aifactory.serve.feedback import FeedbackLog

    pipeline = load_pipeline(spec)
    order = validate(pipeline)
    where = line_home(home)
    settings = TriggerSettings(min_new_rows=min_rows, accuracy_below=accuracy_below, window=window)
    ingest = next((s for s in order if s.kind_name == "ingest"), None)
    dataset = str(ingest.params.get("dataset", pipeline.model)) if ingest else pipeline.model
    wheel = Flywheel(FeedbackLog(where), where, settings, dataset=dataset, model=pipeline.model)
    decision = wheel.check()
    if not as_json:
        typer.echo(f"trigger {'fires' if decision.fire else 'quiet'}: {decision.reason}")
    if check or not decision.fire:
        if as_json:
            typer.echo(json_text({"trigger": decision}))
        return
    train, holdout = wheel.absorb() or (None, None)
    if train is not None and not as_json:
        typer.echo(
            f"feedback absorbed: {train.ref} (parent v{train.parent}), holdout {holdout.ref if holdout else '-'}"
        )
    if on == "auto":
        on = "server" if (where / "server.json").is_file() else "embedded"
    if as_json:
        run = asyncio.run(_run_pipeline(pipeline, where, on, gpus, True, None))
        typer.echo(json_text({"trigger": decision, "dataset": train, "holdout": holdout, "run": run}))
        return
    console = _console()
    with PipelineProgress(console, [s.name for s in order], title=f"pipeline {pipeline.name} ({on})") as progress:
        result = asyncio.run(_run_pipeline(pipeline, where, on, gpus, True, progress))
    if "deploy" in result.outputs:
        console.print(f"gate: {result.outputs['deploy'].get('gate_reason', '')}")


async def _run_pipeline(
    pipeline: Pipeline, home: Path, on: str, gpus: int, use_cache: bool, progress: PipelineProgress | None
) -> RunResult:
    from aifactory.line.executors import ClientExecutor, FloorExecutor, LocalExecutor
    from aifactory.line.runner import PipelineRunner

    if on == "local":
        return await PipelineRunner(LocalExecutor(), home, progress, use_cache).run(pipeline)
    if on == "server":
        from aifactory.live.client import Client

        with Client.from_env(home) as client:
            return await PipelineRunner(ClientExecutor(client), home, progress, use_cache).run(pipeline)
    from aifactory.live.service import FactoryService
    from aifactory.live.settings import LiveSettings

    service = await FactoryService.open(LiveSettings(home=home, gpus=gpus or None, isolation="none"))
    try:
        return await PipelineRunner(FloorExecutor(service), home, progress, use_cache).run(pipeline)
    finally:
        await service.close()


# -- models ---------------------------------------------------------------------------------


@models_app.callback()
def models_list(ctx: typer.Context, home: Path | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """List registered models with their aliases."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from aifactory.line.registry import Registry

    reg = Registry(home)
    if as_json:
        typer.echo(json_text({n: {"versions": reg.versions(n), "aliases": reg.aliases(n)} for n in reg.models()}))
        return
    table = Table("model", "versions", "aliases", "latest", "flavour", "holdout score (latest)")
    for name in reg.models():
        versions = reg.versions(name)
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(reg.aliases(name).items()))
        latest = versions[-1]
        table.add_row(name, str(len(versions)), aliases or "-", f"v{latest.version}", latest.flavour, _headline(latest))
    _console().print(table)


@models_app.command("show")
def models_show(
    ref: str = typer.Argument(..., help="MODEL, MODEL@VERSION or MODEL@ALIAS"),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Versions, aliases, alias history and gate decisions of a model (or one version in full)."""
    from rich.table import Table

    from aifactory.line.registry import Registry, parse_ref

    reg = Registry(home)
    console = _console()
    name, tag = parse_ref(ref)
    if as_json:
        if tag is not None:
            typer.echo(json_text(reg.resolve(ref)))
        else:
            whole = {"versions": reg.versions(name), "aliases": reg.aliases(name)}
            whole |= {"alias_history": reg.alias_history(name), "decisions": reg.decisions(name)}
            typer.echo(json_text(whole))
        return
    if tag is not None:
        v = reg.resolve(ref)
        console.print(f"{v.ref}  created {_when(v.created_at)} UTC  sha256 {v.sha256[:12]}")
        console.print(f"checkpoint {v.checkpoint_path}")
        console.print_json(json.dumps({"metrics": v.metrics, "lineage": v.lineage}, default=str))
        return
    aliases = reg.aliases(name)
    by_version: dict[int, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    table = Table(
        "version", "aliases", "flavour", "holdout score", "trained on", "created (UTC)", title=f"model {name}"
    )
    versions = reg.versions(name)
    for v in reversed(versions):  # newest first
        table.add_row(
            str(v.version),
            ", ".join(sorted(by_version.get(v.version, []))),
            v.flavour,
            _headline(v),
            str(v.lineage.get("dataset", "-")),
            _when(v.created_at),
        )
    console.print(table)
    holdouts = sorted({on for v in versions for k, on in v.measured_on.items() if k.startswith("holdout_")})
    if len(holdouts) > 1:
        console.print(
            f"note: these scores were measured on different holdouts ({', '.join(holdouts)}), so they do not "
            "compare across versions; the gate decisions below score both models on the same holdout."
        )
    history = Table("at (UTC)", "alias", "move", "kind", "reason", title="alias history")
    for h in reg.alias_history(name):
        move = f"v{h.previous} -> v{h.version}" if h.previous is not None else f"-> v{h.version}"
        history.add_row(_when(h.at), h.alias, move, h.kind, h.reason)
    console.print(history)
    gate = Table(
        "at (UTC)",
        "challenger",
        "champion",
        "metric on holdout",
        "scores",
        "promoted",
        "reason",
        title="gate decisions",
    )
    for d in reg.decisions(name):
        champ = f"{d.champion_score:.4f}" if d.champion_score is not None else "-"
        gate.add_row(
            _when(d.at),
            f"v{d.challenger}",
            f"v{d.champion}" if d.champion else "-",
            f"{d.metric} on {d.holdout}",
            f"{d.challenger_score:.4f} vs {champ}",
            "yes" if d.promoted else "no",
            d.reason,
        )
    console.print(gate)


@models_app.command("promote")
def models_promote(
    model: str = typer.Argument(...),
    version: int = typer.Argument(..., help="version to point the alias at"),
    alias_arg: str | None = typer.Argument(None, metavar="[ALIAS]", help="the alias to move (default champion)"),
    alias: str | None = typer.Option(None, "--alias", help="the same as ALIAS"),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Point ALIAS (default champion) at VERSION by hand (the gate is bypassed; the move is recorded)."""
    from aifactory.line.registry import Registry

    which = _alias(alias_arg, alias)
    change = Registry(home).set_alias(model, which, version, reason="promoted by hand")
    if as_json:
        typer.echo(json_text(change))
        return
    before = f"v{change.previous}" if change.previous is not None else "nothing"
    typer.echo(f"{model}@{which}: {before} -> v{change.version}")


@models_app.command("rollback")
def models_rollback(
    model: str = typer.Argument(...),
    alias_arg: str | None = typer.Argument(None, metavar="[ALIAS]", help="the alias to move back (default champion)"),
    alias: str | None = typer.Option(None, "--alias", help="the same as ALIAS"),
    home: Path | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Move ALIAS back to the version it held before its last move."""
    from aifactory.line.registry import Registry

    which = _alias(alias_arg, alias)
    change = Registry(home).rollback(model, which)
    if as_json:
        typer.echo(json_text(change))
        return
    typer.echo(f"{model}@{which}: v{change.previous} -> v{change.version} (rolled back)")


def _alias(positional: str | None, option: str | None) -> str:
    from aifactory.core.errors import SpecError

    if positional is not None and option is not None and positional != option:
        raise SpecError("alias", f"two aliases given: {positional!r} and --alias {option!r}")
    return positional or option or "champion"


def _headline(v: ModelVersion) -> str:
    """A version's first holdout score and the dataset version it was measured on."""
    for key in sorted(v.metrics):
        value = v.metrics[key]
        if key.startswith("holdout_") and isinstance(value, int | float):
            on = v.measured_on.get(key)
            return f"{key.removeprefix('holdout_')} {value:.4f}" + (f" on {on}" if on else "")
    return "-"
