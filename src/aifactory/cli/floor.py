"""The floor's commands: run the server (`up`), submit and watch jobs, see nodes and projects.

Everything but `up` talks HTTP to the server through aifactory.live.client; the
commands only parse, call and print. Imports of httpx, pydantic and rich happen
inside the commands so `aifactory --help` stays instant.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aifactory.cli.apps import new_app
from aifactory.cli.text import json_text, printable
from aifactory.core.errors import SpecError

if TYPE_CHECKING:
    from rich.console import Console

    from aifactory.live.client import Client
    from aifactory.live.wire import GpuOut, JobOut, QuotaOut

ACTIVE_STATES = ["queued", "running", "preempted"]
token_app = new_app(no_args_is_help=True, help="Per-user API tokens (admin only).")
project_app = new_app(no_args_is_help=True, help="Add or change projects (admin only).")
node_app = new_app(no_args_is_help=True, help="Drain a node or give it back (admin only).")
department_app = new_app(no_args_is_help=True, help="Add or change departments (admin only).")


JsonOpt = typer.Option(False, "--json", help="Print JSON (for scripts) instead of a table.")
JobRef = typer.Argument(..., help="Job id; an array's id (every element) or ARRAY_INDEX (one element), e.g. 42_7.")


def register(app: typer.Typer) -> None:
    """Add the floor's commands to the top-level app."""
    # The server's options come from LiveSettings (one source for `up` and the server module).
    passthrough = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
    app.command(context_settings=passthrough, add_help_option=False)(up)
    app.command()(login)
    app.command(context_settings={"allow_interspersed_args": False})(submit)
    app.command()(jobs)
    app.command()(show)
    app.command()(logs)
    app.command()(cancel)
    app.command()(hold)
    app.command()(release)
    app.command()(update)
    app.command()(requeue)
    app.command()(nodes)
    app.command()(projects)
    app.command()(usage)
    app.command()(events)
    app.add_typer(token_app, name="token")
    app.add_typer(project_app, name="project")
    app.add_typer(department_app, name="department")
    app.add_typer(node_app, name="node")


def _client() -> Client:
    from aifactory.live.client import Client

    return Client.from_env()


def _console() -> Console:
    import os

    from rich.console import Console

    # Piped output (grep, files) gets wide lines instead of rich's 80 columns and wrapped cells.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    # Markup off: names and reasons are other users' text, never rich markup (a name `[/]` crashed it).
    return Console(highlight=False, soft_wrap=False, width=width, markup=False, emoji=False)


def up(ctx: typer.Context) -> None:
    """Run the factory's server in the foreground (Ctrl-C stops it; running jobs carry on).

    Options: `aifactory up --help` (the server's own, from LiveSettings; config.toml [floor] gives defaults)."""
    from aifactory.live.api.server import run
    from aifactory.live.settings import parse_settings

    run(parse_settings(ctx.args, "aifactory up"))


def login(
    url: str = typer.Argument(..., help="The factory server, e.g. http://gpu-head:8470."),
    token_file: Path | None = typer.Option(None, help="Read the token from this file (default: ask for it)."),
) -> None:
    """Connect once: check the URL and token, then keep them in $AIFACTORY_HOME/config.toml (0600).
    A token bound to one project makes it the default project of `submit`."""
    from aifactory.config import resolve_home, write_login
    from aifactory.live.client import Client

    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise SpecError("token_file", f"cannot read {token_file}: {exc.strerror}") from None
    else:
        token = typer.prompt("token", hide_input=True).strip()
    if not token:
        raise SpecError("token", "is empty")
    import os

    from aifactory.config import read_config

    home = resolve_home()
    ca = os.environ.get("AIFACTORY_CA") or read_config(home).ca  # `aifactory --ca FILE login ...`
    with Client(url, token, ca=ca) as client:
        who = client.me()
    project = who.projects[0] if who.projects is not None and len(who.projects) == 1 else None
    path = write_login(home, url, token, project, ca)
    scope = "every project" if who.projects is None else ", ".join(who.projects)
    default = f"; default project {project}" if project else ""
    typer.echo(f"logged in to {url} as {who.user} ({scope}){default}; saved in {path}")


def _read_job_file(path: Path) -> dict[str, Any]:
    import yaml

    from aifactory.bounded import load_yaml, read_bounded

    try:
        data = load_yaml(read_bounded(path), "file", str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("file", f"{path}: malformed YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError("file", f"{path}: must be a mapping of job fields (command, project, gpus, ...)")
    # Keys as the options spell them (time-limit) or as the API does (time_limit).
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError("env", f"expected KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def _workdir(option: str | None, in_file: object, file_dir: Path | None) -> object:
    """Like sbatch: a job runs where it was submitted from unless told otherwise.

    A relative `--workdir` is relative to here; a relative `workdir` in a job file, to the file.
    """
    if option is not None:
        return str(Path(option).resolve())
    if isinstance(in_file, str) and file_dir is not None:
        return str(file_dir / in_file)
    return str(Path.cwd()) if in_file is None else in_file


def submit(
    args: list[str] = typer.Argument(None, help="The command to run (after --), or one job YAML file."),
    project: str | None = typer.Option(None, help="Project to charge (default: default)."),
    gpus: float | None = typer.Option(
        None, help="GPUs: a whole number, a fraction of one GPU (0.5), or 0 for a job with no GPU (give --cpus)."
    ),
    gpu_memory: str | None = typer.Option(None, help="A fraction of one GPU by memory, e.g. 20GiB."),
    gpu_model: str | None = typer.Option(None, help="Only GPUs of this model."),
    cpus: float | None = typer.Option(None, help="CPU cores on each node the job runs on, e.g. 4."),
    memory: str | None = typer.Option(None, help="Memory on each node the job runs on, e.g. 16GiB."),
    multi_node: bool | None = typer.Option(
        None, "--multi-node", help="May span nodes (a gang) if one node is too small."
    ),
    time_limit: str | None = typer.Option(None, help="Kill the job after this long, e.g. 30m, 1h30m."),
    priority: int | None = typer.Option(None, help="Higher runs first within its project."),
    priority_class: str | None = typer.Option(
        None, "--class", help="train (default; may borrow, preemptible), interactive or inference (within quota)."
    ),
    name: str | None = typer.Option(None, help="A name to recognise the job by."),
    env: list[str] = typer.Option([], help="KEY=VALUE for the job's environment (repeatable)."),
    workdir: str | None = typer.Option(None, help="Working directory of the job [default: the current one]."),
    array: str | None = typer.Option(
        None, help="A job array: 0-99%8 (indices 0 to 99, at most 8 running at once), or 1,3,5-7."
    ),
    after: list[str] = typer.Option(
        [], help="Wait for job ID to end: ID or ID:ok (succeeded), ID:any, ID:failed (repeatable)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the job id."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Say where it would run now, or why it would wait and when it may start; submit nothing.",
    ),
) -> None:
    """Submit a job: `submit --gpus 2 -- python train.py` or `submit job.yaml`."""
    args = args or []
    from_file = len(args) == 1 and args[0].endswith((".yaml", ".yml"))
    body: dict[str, Any] = _read_job_file(Path(args[0])) if from_file else {"command": args}
    options = {
        "project": project,
        "gpus": gpus,
        "gpu_memory": gpu_memory,
        "gpu_model": gpu_model,
        "cpus": cpus,
        "memory": memory,
        "multi_node": multi_node,
        "time_limit": time_limit,
        "priority": priority,
        "priority_class": priority_class,
        "name": name,
    }
    body |= {k: v for k, v in options.items() if v is not None}
    if "project" not in body:  # the project a one-project token logged in with (aifactory login)
        from aifactory.config import read_config, resolve_home

        default = read_config(resolve_home()).project
        if default is not None:
            body["project"] = default
    body["workdir"] = _workdir(workdir, body.get("workdir"), Path(args[0]).resolve().parent if from_file else None)
    if env:
        file_env = body.get("env") or {}
        if not isinstance(file_env, dict):
            raise SpecError("env", f"must be a mapping of KEY: VALUE, got {file_env!r}")
        body["env"] = {**file_env, **_parse_env(env)}
    if after:
        body["after"] = [*(body.get("after") or []), *after]
    if array is not None:
        body["array"] = array
    with _client() as client:
        if dry_run:
            trial = client.dry_run(body)
            if trial.placement is not None:
                typer.echo(f"would run now on {trial.placement}")
            else:
                when = f"; estimated start {_clock(trial.estimated_start)}" if trial.estimated_start else ""
                typer.echo(f"would wait: {trial.pending_reason}{when}")
            return
        job = client.submit(body)
    if quiet:
        typer.echo(job.id)
    elif job.array_id is not None:
        typer.echo(
            f"array {job.array_id} submitted to {job.project} (element ids from {job.id}; {job.array_id}_N is element N)"
        )
    else:
        typer.echo(f"job {job.id} submitted to {job.project}: {job.state}")


def duration(seconds: float | None) -> str:
    """`850ms`, `42s`, `3m05s`, `2h01m`: short enough for a table cell."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _clock(at: float | None) -> str:
    from datetime import datetime

    return "-" if at is None else datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _gpus(value: float) -> str:
    return f"{value:g}"


STATE_STYLE = {"queued": "yellow", "running": "cyan", "preempted": "magenta", "succeeded": "green"}
STATE_STYLE |= {"failed": "red", "cancelled": "dim"}


def _estimate(job: JobOut) -> str:
    """`~in 4m10s` for a queued job whose start the time limits bound; "" where unknown."""
    import time

    if job.estimated_start is None:
        return ""
    wait = job.estimated_start - time.time()
    return "~now" if wait < 1 else f"~in {duration(wait)}"


def _note(job: JobOut) -> str:
    """What a reader wants to know next to the state: why it waits (and when it may start), or how it ended."""
    if job.state == "queued":
        when = _estimate(job)
        return f"{job.pending_reason} (start {when})" if when else job.pending_reason
    if job.state in ("failed", "cancelled"):
        return job.reason
    return ""


def _arrays_folded(rows: list[JobOut]) -> list[JobOut]:
    """One row per job array (its first element's, with its elements' states counted in the note)."""
    out: list[JobOut] = []
    arrays: dict[int, list[JobOut]] = {}
    for j in rows:
        if j.array_id is None:
            out.append(j)
            continue
        if j.array_id not in arrays:
            arrays[j.array_id] = []
            out.append(j)
        arrays[j.array_id].append(j)
    folded = []
    for j in out:
        group = arrays.get(j.array_id) if j.array_id is not None else None
        if not group:
            folded.append(j)
            continue
        counts: dict[str, int] = {}
        for e in group:
            counts[e.state] = counts.get(e.state, 0) + 1
        indices = sorted(e.array_index or 0 for e in group)
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        folded.append(
            j.model_copy(
                update={
                    "name": f"{j.name or Path(j.command[0]).name} [{len(group)}: {indices[0]}-{indices[-1]}]",
                    "state": states,  # e.g. "92 queued, 8 running"
                    "placement": None,
                    "reason": "",
                    "pending_reason": "",
                    "id": j.array_id,
                }
            )
        )
    return folded


def jobs(
    project: str | None = typer.Option(None, help="Only this project."),
    state: str | None = typer.Option(None, help="Only this state (queued, running, succeeded, ...)."),
    user: str | None = typer.Option(None, help="Only this user's jobs."),
    all_: bool = typer.Option(False, "--all", "-a", help="Finished jobs too (default: queued and running only)."),
    expand: bool = typer.Option(False, "--expand", help="One row per element of a job array (default: one per array)."),
    as_json: bool = JsonOpt,
) -> None:
    """The queue: id, project, user, state, GPUs, where, wait, runtime, and why a queued job waits."""
    from aifactory.cli.columns import gpu_ranges, render, terminal_width

    states = [state] if state else (None if all_ else ACTIVE_STATES)
    with _client() as client:
        rows = sorted(client.jobs(project=project, state=states, user=user), key=lambda j: j.id)
    if as_json:
        typer.echo(json_text(rows))
        return
    if not rows:
        typer.echo("no jobs" + ("" if all_ or state else " queued or running (--all shows finished ones)"))
        return
    if not expand:
        rows = _arrays_folded(rows)
    headers = ("ID", "NAME", "PROJECT", "USER", "STATE", "GPUS", "WHERE", "WAIT", "RUNTIME", "NOTE")
    cells = [
        (
            str(j.id),
            j.name or Path(j.command[0]).name,
            j.project,
            j.user,
            j.state,
            _gpus(j.gpus),
            gpu_ranges(j.placement) if j.placement else "-",
            duration(j.wait_s),
            duration(j.runtime_s),
            ("idle GPUs; " if j.idle_since else "") + _note(j),
        )
        for j in rows
    ]
    styles = {(n, 4): STATE_STYLE.get(j.state, "") for n, j in enumerate(rows)}
    width = terminal_width()
    cut = ("NOTE", "NAME", "WHERE", "PROJECT", "USER")  # cut first where a table is wider than the terminal
    typer.echo(render(headers, cells, right=frozenset({"ID", "GPUS"}), styles=styles, width=width, shrink=cut))


def show(ref: str = JobRef, as_json: bool = JsonOpt) -> None:
    """One job: its spec, state history with times, exit code and reason, GPU use where measured;
    an array: its elements."""
    from rich.table import Table

    with _client() as client:
        [first] = _targets(client, ref, whole=False)
        j = client.job(first)
        elements = client.array(j.id) if j.array_id == j.id and "_" not in ref else None
    if elements is not None:
        if as_json:
            typer.echo(json_text(elements))
            return
        from aifactory.cli.columns import render

        rows = [(f"{j.id}_{e.array_index}", str(e.id), e.state, e.placement or "-", _note(e)) for e in elements]
        typer.echo(render(("ELEMENT", "JOB", "STATE", "WHERE", "NOTE"), rows))
        return
    if as_json:
        typer.echo(json_text(j))
        return
    console = _console()
    console.print(f"job {j.id}" + (f" ({printable(j.name)})" if j.name else "") + f": {j.state}", style="bold")
    spec = {k: v for k, v in (j.spec or {}).items() if k != "command" and v not in (None, {}, False)}
    lines = [
        ("command", shlex.join(j.command)),
        ("project", j.project),
        ("user", j.user),
        *((k, str(v)) for k, v in spec.items() if k not in ("project", "user")),
        ("placement", j.placement or "-"),
        ("attempts", str(j.attempts)),
        ("wait", duration(j.wait_s)),
        ("runtime", duration(j.runtime_s)),
        ("exit code", "-" if j.exit_code is None else str(j.exit_code)),
        ("reason", j.reason or "-"),
    ]
    if j.gpu_util_mean is not None:
        lines.append(("GPU use", f"mean {j.gpu_util_mean:.0f} %, peak {j.gpu_util_peak or 0:.0f} %"))
        lines.append(("GPU memory peak", f"{j.gpu_memory_peak_mib} MiB"))
        lines.append(("energy", f"{j.energy_wh or 0:.3f} Wh"))
    if j.idle_since is not None:
        lines.append(("idle", f"its GPUs idle since {_clock(j.idle_since)}"))
    if j.checkpoint_at is not None:
        lines.append(("last checkpoint", _clock(j.checkpoint_at)))
    if j.state == "queued":
        lines.append(("pending", j.pending_reason))
        if j.estimated_start is not None:
            lines.append(("estimated start", f"{_clock(j.estimated_start)} ({_estimate(j)}, if jobs ahead allow)"))
    pad = max(len(key) for key, _ in lines)
    for key, value in lines:
        console.print(f"  {key:<{pad}}  {printable(value)}")
    history = Table(title="history", box=None, header_style="bold", title_justify="left")
    for col in ("TIME", "FROM", "TO", "REASON"):
        history.add_column(col)
    for e in j.history or []:
        history.add_row(_clock(e.at), e.old or "-", e.new, printable(e.reason))
    console.print(history)


def logs(
    job_id: int = typer.Argument(..., help="Job id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
    tail: int | None = typer.Option(None, help="Only the last N lines."),
    rank: int | None = typer.Option(None, help="One rank of a multi-node job (default: all, lines prefixed)."),
) -> None:
    """A job's stdout and stderr."""
    out = sys.stdout.buffer
    with _client() as client:
        for chunk in client.stream_log(job_id, tail, follow, rank):
            out.write(chunk)
            if follow:
                out.flush()
    out.flush()


def _targets(client: Client, ref: str, whole: bool = True) -> list[int]:
    """The job ids a reference names: `42` (a job, or every element of array 42), `42_7`."""
    head, sep, index = ref.partition("_")
    if not head.isdigit() or (sep and not index.isdigit()):
        raise SpecError("job", f"not a job id: {ref!r} (write 42, or 42_7 for element 7 of array 42)")
    if sep:
        elements = [e for e in client.array(int(head)) if e.array_index == int(index)]
        if not elements:
            raise SpecError("job", f"array {head} has no element {index}")
        return [elements[0].id]
    job = client.job(int(head))
    if whole and job.array_id == job.id:
        return [e.id for e in client.array(job.id)]
    return [job.id]


def cancel(ref: str = JobRef) -> None:
    """Cancel a job: a queued one at once, a running one with SIGTERM (then SIGKILL after a grace period)."""
    _each(ref, lambda client, job_id: client.cancel(job_id))


def hold(ref: str = JobRef) -> None:
    """Hold a queued job: it is not started until released, and keeps its place in the queue."""
    _each(ref, lambda client, job_id: client.job_action(job_id, "hold"))


def release(ref: str = JobRef) -> None:
    """Release a held job: it goes back to its place in the queue."""
    _each(ref, lambda client, job_id: client.job_action(job_id, "release"))


def requeue(ref: str = JobRef) -> None:
    """Stop a running job (with the preemption grace) and queue it again."""
    _each(ref, lambda client, job_id: client.job_action(job_id, "requeue"))


def _each(ref: str, act: Callable[[Client, int], JobOut]) -> None:
    """Act on the job, or on each element of an array (those it does not apply to are skipped)."""
    from aifactory.live.client import ApiError

    with _client() as client:
        targets = _targets(client, ref)
        done = 0
        for job_id in targets:
            try:
                j = act(client, job_id)
            except ApiError:
                if len(targets) == 1:
                    raise
                continue  # e.g. an element that has ended
            done += 1
            if len(targets) == 1:
                note = f" ({j.pending_reason})" if j.pending_reason else ""
                stopping = " (stopping)" if j.state in ("running", "preempted") and j.reason != "" else ""
                typer.echo(f"job {j.id}: {j.state}{note}{stopping if not note else ''}")
    if len(targets) > 1:
        typer.echo(f"array {ref}: {done} of {len(targets)} elements")


def update(
    ref: str = JobRef,
    priority: int | None = typer.Option(None, help="New priority (only an admin may raise one)."),
    time_limit: str | None = typer.Option(None, help="New time limit, e.g. 2h (a running job too)."),
    gpus: float | None = typer.Option(None, help="New GPU count (a queued job)."),
) -> None:
    """Change a queued job's priority, time limit or GPUs; a running job's time limit."""
    fields = {k: v for k, v in (("priority", priority), ("time_limit", time_limit), ("gpus", gpus)) if v is not None}
    if not fields:
        raise SpecError("options", "give --priority, --time-limit or --gpus")
    with _client() as client:
        for job_id in _targets(client, ref):
            j = client.update_job(job_id, **fields)
            typer.echo(f"job {j.id}: {j.state}, priority {j.priority}, {_gpus(j.gpus)} GPUs")


def _holders(gpu: GpuOut) -> str:
    if not gpu.holders:
        return "free"
    parts = []
    for h in gpu.holders:
        share = "" if h.milli == 1000 else f" ({h.milli / 1000:.2f})"
        who = "in use" if h.job_id is None else f"job {h.job_id} {h.user}/{h.project}"
        parts.append(f"{who}{share}")
    return printable(", ".join(parts))


def nodes(as_json: bool = JsonOpt) -> None:
    """Nodes (free/total CPUs and memory, where tracked), their GPUs (model, memory), and who holds each GPU."""
    from rich.table import Table

    with _client() as client:
        rows = client.nodes()
    if as_json:
        typer.echo(json_text(rows))
        return
    table = Table(box=None, header_style="bold")
    for col in ("NODE", "POOL", "STATE", "ISOLATION", "CPUS FREE", "MEMORY FREE", "GPU", "MODEL", "MEMORY", "HELD BY"):
        table.add_column(col)
    for n in rows:
        cpus = f"{n.cpu_free_milli / 1000:g}/{n.cpu_milli / 1000:g}" if n.cpu_milli else "-"
        host_mem = f"{n.memory_free_mib / 1024:g}/{n.memory_mib / 1024:g} GiB" if n.memory_mib else "-"
        for g in n.gpus:
            memory = f"{g.memory_mib / 1024:g} GiB" if g.memory_mib else "-"
            table.add_row(
                printable(n.name),
                printable(n.pool),
                n.state,
                n.isolation,
                cpus,
                host_mem,
                str(g.index),
                g.model,
                memory,
                _holders(g),
            )
            cpus = host_mem = ""  # once per node
    _console().print(table)


def events(
    job: int | None = typer.Option(None, "--job", help="One job's events."),
    since: str | None = typer.Option(None, help="How far back, e.g. 1h, 7d (default: the last events)."),
    limit: int = typer.Option(200, min=1, max=10_000, help="At most this many events."),
    as_json: bool = JsonOpt,
) -> None:
    """The event history: jobs' state changes (and, for an admin, nodes drained, lost or joined)."""
    import time

    from aifactory.cli.columns import render
    from aifactory.live.wire import parse_duration_s

    start = None
    if since is not None:
        try:
            start = time.time() - parse_duration_s(since)
        except ValueError as exc:
            raise SpecError("since", str(exc)) from None
    with _client() as client:
        out = client.events(job, start, limit)
    if as_json:
        typer.echo(json_text(out))
        return
    rows = [(e.at, str(e.job_id), f"{e.old or '-'} -> {e.new}", e.reason) for e in out.jobs]
    rows += [(n.at, f"node {n.node}", n.kind, f"by {n.by}" if n.by else "") for n in out.nodes]
    cells = [(_clock(at), what, change, why) for at, what, change, why in sorted(rows, key=lambda r: r[0])]
    typer.echo(render(("TIME", "JOB", "CHANGE", "REASON"), cells) if cells else "no events")


def usage(
    since: str = typer.Option("30d", help="How far back, e.g. 30d, 12h, 1h30m."),
    by: str = typer.Option("project", help="Group by project, user or department."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    as_csv: bool = typer.Option(False, "--csv", help="Print the report as CSV."),
) -> None:
    """GPU-hours allocated and busy, energy and cost over a period, like Slurm's sreport."""
    import time

    from aifactory.live.wire import parse_duration_s

    if by not in ("project", "user", "department"):
        raise SpecError("by", f"must be project, user or department, got {by!r}")
    if as_json and as_csv:
        raise SpecError("csv", "give --json or --csv, not both")
    try:
        back = parse_duration_s(since)
    except ValueError as exc:
        raise SpecError("since", str(exc)) from None
    with _client() as client:
        report = client.usage(time.time() - back, by=by)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    head = (by.upper(), "JOBS", "GPU-HOURS", "BUSY GPU-HOURS", "BUSY %", "ENERGY KWH", "COST")
    rows = [
        (
            printable(r.key),
            str(r.jobs),
            f"{r.gpu_hours:.2f}",
            f"{r.busy_gpu_hours:.2f}",
            "-" if r.busy_ratio is None else f"{100 * r.busy_ratio:.0f}",
            f"{r.energy_kwh:.3f}",
            f"{r.cost:.2f}",
        )
        for r in report.rows
    ]
    if as_csv:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow([by, "jobs", "gpu_hours", "busy_gpu_hours", "busy_ratio", "energy_kwh", "cost"])
        writer.writerows(
            [[r.key, r.jobs, r.gpu_hours, r.busy_gpu_hours, r.busy_ratio, r.energy_kwh, r.cost] for r in report.rows]
        )
        return
    from aifactory.cli.columns import render

    numeric = frozenset(head[1:])
    typer.echo(render(head, rows, right=numeric))


def projects(as_json: bool = JsonOpt) -> None:
    """Projects: quota, weight, limit, department, GPUs in use, borrowed and lent, jobs; then departments."""
    from rich.table import Table

    with _client() as client:
        rows = client.projects()
        depts = client.departments()
        quota = client.quota()
    if as_json:
        typer.echo(json_text({"projects": rows, "departments": depts, "quota": quota}))
        return
    table = Table(box=None, header_style="bold")
    cols: tuple[str, ...] = ("PROJECT", "DEPARTMENT", "QUOTA", "WEIGHT", "LIMIT", "IN USE", "BORROWED", "LENT")
    cols += ("RUNNING", "PENDING")
    for col in cols:
        table.add_column(col, justify="left" if col in ("PROJECT", "DEPARTMENT") else "right")
    for p in rows:
        limit = "-" if p.limit is None else _gpus(p.limit)
        pending = f"{p.queued} ({_gpus(p.pending_gpus)} GPUs)" if p.queued else "0"
        numbers = (_gpus(p.quota), _gpus(p.weight), limit, _gpus(p.in_use), _gpus(p.borrowed), _gpus(p.lent))
        table.add_row(printable(p.name), printable(p.department or "-"), *numbers, str(p.running), pending)
    console = _console()
    console.print(table)
    if depts:
        dtable = Table(box=None, header_style="bold")
        for col in ("DEPARTMENT", "QUOTA", "WEIGHT", "LIMIT", "IN USE", "BORROWED", "PROJECTS"):
            dtable.add_column(col, justify="left" if col in ("DEPARTMENT", "PROJECTS") else "right")
        for d in depts:
            limit = "-" if d.limit is None else _gpus(d.limit)
            dnumbers = (_gpus(d.quota), _gpus(d.weight), limit, _gpus(d.in_use), _gpus(d.borrowed))
            dtable.add_row(printable(d.name), *dnumbers, printable(", ".join(d.projects) or "-"))
        console.print()
        console.print(dtable)
    _say_oversubscribed(quota)


@token_app.command("create")
def token_create(
    user: str = typer.Option(..., help="Whom the token acts for: the user of the jobs it submits."),
    project: list[str] = typer.Option(..., help="A project the token may use (repeatable)."),
    admin: bool = typer.Option(False, help="An admin token: every project, may create tokens."),
    expires: str | None = typer.Option(None, help="Lapses after this long, e.g. 30d, 12h (default: never)."),
) -> None:
    """Create a token for USER bound to PROJECTs; printed once, the server keeps only its hash."""
    with _client() as client:
        t = client.create_token(user, project, admin, expires)
    typer.echo(t.token)


@token_app.command("list")
def token_list(as_json: bool = JsonOpt) -> None:
    """Every token: id, user, projects, created, expires, state (active, expired, revoked)."""
    from rich.table import Table

    with _client() as client:
        rows = client.tokens()
    if as_json:
        typer.echo(json_text(rows))
        return
    table = Table(box=None, header_style="bold")
    for col in ("ID", "USER", "PROJECTS", "ADMIN", "CREATED", "EXPIRES", "STATE"):
        table.add_column(col)
    for t in rows:
        projects = "*" if t.projects == "*" else ",".join(t.projects)
        expires = "-" if t.expires_at is None else _clock(t.expires_at)[:16]
        admin_mark = "yes" if t.admin else ""
        table.add_row(
            t.id, printable(t.user), printable(projects), admin_mark, _clock(t.created_at)[:16], expires, t.state
        )
    _console().print(table)


@token_app.command("revoke")
def token_revoke(token_id: str = typer.Argument(..., help="The token's id (from `token list`; 8+ digits).")) -> None:
    """Revoke a token: refused from its next request on."""
    with _client() as client:
        revoked = client.revoke_token(token_id)
    for t in revoked:
        typer.echo(f"token {t.id} ({printable(t.user)}): revoked")


@token_app.command("rotate-admin")
def token_rotate_admin() -> None:
    """A new admin token in the server's home `token` file; the old one is revoked."""
    with _client() as client:
        t = client.rotate_admin()
    typer.echo(f"new admin token {t.id} written to the server's token file; the old one is revoked")


@node_app.command("drain")
def node_drain(name: str = typer.Argument(..., help="The node, as `aifactory nodes` names it.")) -> None:
    """No new job on NAME; the jobs running there run on (kept across restarts)."""
    with _client() as client:
        n = client.drain(name, True)
    typer.echo(f"node {printable(n.name)}: drained")


@node_app.command("resume")
def node_resume(name: str = typer.Argument(..., help="The node, as `aifactory nodes` names it.")) -> None:
    """NAME takes work again."""
    with _client() as client:
        n = client.drain(name, False)
    typer.echo(f"node {printable(n.name)}: takes work")


@project_app.command("set")
def project_set(
    name: str = typer.Argument(..., help="Project name."),
    quota: float | None = typer.Option(None, help="Guaranteed GPUs."),
    weight: float | None = typer.Option(None, help="Share of idle GPUs lent over the quota."),
    limit: float | None = typer.Option(None, help="Most GPUs the project may hold at once."),
    no_limit: bool = typer.Option(False, "--no-limit", help="Clear the limit."),
    pool: str | None = typer.Option(None, help="Node pool its jobs are bound to."),
    no_pool: bool = typer.Option(False, "--no-pool", help="Bind its jobs to no pool."),
    department: str | None = typer.Option(None, help="Department it belongs to (one that exists)."),
    no_department: bool = typer.Option(False, "--no-department", help="Take it out of its department."),
    idle_timeout: str | None = typer.Option(
        None, help="Stop its interactive jobs once their GPUs idle this long, e.g. 30m."
    ),
    no_idle_timeout: bool = typer.Option(False, "--no-idle-timeout", help="Never stop idle jobs."),
) -> None:
    """Add project NAME, or change only the fields given (the rest are kept; --no-X clears X)."""
    fields: dict[str, Any] = {}
    for key, value, clear in (
        ("quota", quota, False),
        ("weight", weight, False),
        ("limit", limit, no_limit),
        ("pool", pool, no_pool),
        ("department", department, no_department),
        ("idle_timeout", idle_timeout, no_idle_timeout),
    ):
        if clear and value is not None:
            raise SpecError(key, f"give --{key.replace('_', '-')} or --no-{key.replace('_', '-')}, not both")
        if clear or value is not None:
            fields[key] = value
    if idle_timeout is not None:  # the API takes seconds
        from aifactory.live.wire import parse_duration_s

        try:
            fields["idle_timeout_s"] = parse_duration_s(fields.pop("idle_timeout"))
        except ValueError as exc:
            raise SpecError("idle_timeout", str(exc)) from None
    elif no_idle_timeout:
        fields["idle_timeout_s"] = fields.pop("idle_timeout")
    with _client() as client:
        p = client.set_project(name, **fields)
        q = client.quota()
    typer.echo(f"project {p.name}: quota {_gpus(p.quota)}, weight {_gpus(p.weight)}")
    _say_oversubscribed(q)


def _say_oversubscribed(q: QuotaOut) -> None:
    if q.oversubscribed:
        typer.echo(f"note: quotas add up to {_gpus(q.quota_gpus)} GPUs on a floor of {q.gpus}: over-subscribed")


@project_app.command("delete")
def project_delete(
    name: str = typer.Argument(..., help="Project name."),
    force: bool = typer.Option(False, "--force", help="Cancel its queued and running jobs first."),
) -> None:
    """Remove project NAME (refused while it has queued or running jobs, unless --force)."""
    with _client() as client:
        out = client.delete_project(name, force)
    typer.echo(
        f"project {out.name} deleted"
        + (f" (cancelled jobs {', '.join(map(str, out.cancelled))})" if out.cancelled else "")
    )


@department_app.command("set")
def department_set(
    name: str = typer.Argument(..., help="Department name."),
    quota: float | None = typer.Option(None, help="Guaranteed GPUs for all its projects together."),
    weight: float | None = typer.Option(None, help="Share of idle GPUs lent to it over its quota."),
    limit: float | None = typer.Option(None, help="Most GPUs its projects may hold at once."),
    no_limit: bool = typer.Option(False, "--no-limit", help="Clear the limit."),
) -> None:
    """Add department NAME, or change only the fields given; projects join with --department."""
    if no_limit and limit is not None:
        raise SpecError("limit", "give --limit or --no-limit, not both")
    fields: dict[str, Any] = {
        k: v for k, v in (("quota", quota), ("weight", weight), ("limit", limit)) if v is not None
    }
    if no_limit:
        fields["limit"] = None
    with _client() as client:
        d = client.set_department(name, **fields)
    typer.echo(f"department {d.name}: quota {_gpus(d.quota)}, weight {_gpus(d.weight)}")


@department_app.command("delete")
def department_delete(
    name: str = typer.Argument(..., help="Department name."),
    force: bool = typer.Option(False, "--force", help="Cancel its projects' queued and running jobs first."),
) -> None:
    """Remove department NAME (its projects stand alone after; refused while they have active jobs, unless --force)."""
    with _client() as client:
        out = client.delete_department(name, force)
    typer.echo(
        f"department {out.name} deleted"
        + (f" (cancelled jobs {', '.join(map(str, out.cancelled))})" if out.cancelled else "")
    )
