"""The dashboard at the server's root: server-rendered pages (Jinja2), kept fresh by htmx
polling its fragments, charts drawn by uPlot from small JSON routes. htmx and uPlot are shipped
in `static/` (no Node build, no CDN: it works offline).

Signed in with a token (the sign-in form sets it as an HttpOnly, SameSite=Strict cookie); every
page and fragment is the API's caller underneath, so a tenant sees its own projects' jobs and
others' GPUs only as "in use". A change (cancel) must come from htmx (`HX-Request` header, which
a form on another site cannot send) as well as with the cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from aifactory.core.errors import InvalidTransition
from aifactory.core.states import JobState
from aifactory.live.api.auth import Caller, Forbidden, Unauthorized
from aifactory.live.api.deps import ServiceDep, caller_of
from aifactory.live.api.routes.jobs import scope, visible_job
from aifactory.live.service import FactoryService
from aifactory.live.usage import daily
from aifactory.live.wire import MAX_ID

COOKIE = "aifactory_token"
STATIC = Path(__file__).resolve().parent / "static"
LOG_TAIL = 64 << 10  # the job page shows the last 64 KiB of its log
PAGE = 200  # jobs per page of the jobs list

router = APIRouter(include_in_schema=False)
_env = Environment(loader=PackageLoader("aifactory.live.web", "templates"), autoescape=select_autoescape())
_env.filters["when"] = lambda t: "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
_env.filters["gpus"] = lambda x: f"{x:g}"


def _html(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context))


def web_caller(request: Request) -> Caller:
    token = request.cookies.get(COOKIE)
    if not token:
        raise _SignIn()
    try:
        return caller_of(request, token)
    except Unauthorized:
        raise _SignIn() from None


class _SignIn(Exception):
    """No valid cookie: pages go to the sign-in form, fragments answer 401."""


WebCaller = Annotated[Caller, Depends(web_caller)]
JobId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def install(app: Any) -> None:
    """The dashboard's routes, its static files and its sign-in redirect."""
    from fastapi.staticfiles import StaticFiles

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(_SignIn)
    async def sign_in(request: Request, _: _SignIn) -> Response:
        if request.url.path.startswith("/ui/"):
            return JSONResponse({"detail": "sign in"}, status_code=401)
        return RedirectResponse("/login", status_code=303)


# -- sign in ---------------------------------------------------------------------------------


@router.get("/login")
async def login_form(error: str = "") -> HTMLResponse:
    return _html("login.html", error=error[:200])


@router.post("/login")
async def login(request: Request) -> Response:
    body = await request.body()
    token = (parse_qs(body.decode("utf-8", "replace")[:4096]).get("token") or [""])[0].strip()
    try:
        if not token or len(token) > 512:
            raise Unauthorized("no token")
        caller_of(request, token)
    except Unauthorized:
        return _html("login.html", error="That token is not known, or has expired or been revoked.")
    out = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https"
    out.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, max_age=7 * 86400)
    return out


@router.post("/logout")
async def logout() -> Response:
    out = RedirectResponse("/login", status_code=303)
    out.delete_cookie(COOKIE)
    return out


# -- pages -----------------------------------------------------------------------------------


def _overview(service: FactoryService, caller: Caller) -> dict[str, Any]:
    factory = service.factory
    cluster = factory.cluster
    total = sum(n.gpu_count for n in cluster)
    allocated = sum(n.gpu_count * 1000 - n.free_milli for n in cluster) / 1000
    readings = service.telemetry.latest
    busy = sum(r.utilization for r in readings.values()) / 100 if readings else None
    mine = scope(caller)
    queued = [
        j for j in factory.jobs.values() if j.state is JobState.QUEUED and (mine is None or j.spec.project in mine)
    ]
    running = [
        j for j in factory.jobs.values() if j.state is JobState.RUNNING and (mine is None or j.spec.project in mine)
    ]
    now = time.time()
    waits = [now - j.submitted_at for j in queued]
    return {
        "gpus_total": total,
        "gpus_allocated": allocated,
        "gpus_busy": busy,
        "nodes_up": sum(1 for n in cluster if n.up),
        "nodes": len(cluster.nodes),
        "queued": len(queued),
        "running": len(running),
        "longest_wait_s": max(waits, default=0.0),
        "mean_wait_s": sum(waits) / len(waits) if waits else 0.0,
    }


@router.get("/")
async def overview(service: ServiceDep, caller: WebCaller) -> HTMLResponse:
    return _html("overview.html", caller=caller, page="overview", o=_overview(service, caller))


@router.get("/ui/overview")
async def overview_fragment(service: ServiceDep, caller: WebCaller) -> HTMLResponse:
    return _html("_overview.html", o=_overview(service, caller))


@router.get("/ui/overview.json")
async def overview_data(service: ServiceDep, caller: WebCaller) -> dict[str, Any]:
    """The overview's figures, and each GPU's holder and utilisation (for scripts and tests)."""
    return {**_overview(service, caller), "gpus": _gpu_map(service, caller)}


def _gpu_map(service: FactoryService, caller: Caller) -> list[dict[str, Any]]:
    jobs = service.factory.jobs
    out = []
    for node in service.factory.cluster:
        for g in range(node.gpu_count):
            held = node.holders[g]
            who = []
            for job_id, milli in sorted(held.items()):
                job = jobs.get(job_id)
                seen = job is not None and caller.may_use(job.spec.project)
                who.append(
                    {
                        "job": job_id if seen else None,
                        "project": job.spec.project if seen and job else None,
                        "user": job.spec.user if seen and job else None,
                        "share": milli / 1000,
                    }
                )
            r = service.telemetry.latest.get((node.name, g))
            out.append(
                {
                    "node": node.name,
                    "gpu": g,
                    "model": node.gpu_model,
                    "state": node.state,
                    "holders": who,
                    "utilization": r.utilization if r else None,
                    "memory_used_mib": r.memory_used_mib if r else None,
                    "power_w": r.power_w if r else None,
                }
            )
    return out


@router.get("/nodes")
async def nodes(service: ServiceDep, caller: WebCaller) -> HTMLResponse:
    return _html("nodes.html", caller=caller, page="nodes", gpus=_gpu_map(service, caller))


@router.get("/ui/nodes")
async def nodes_fragment(service: ServiceDep, caller: WebCaller) -> HTMLResponse:
    return _html("_nodes.html", gpus=_gpu_map(service, caller))


Filter = Annotated[str, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


@dataclass(frozen=True, slots=True)
class JobFilters:
    """The jobs list's filters, from its query string ("" : any)."""

    state: Filter = ""
    project: Filter = ""
    user: Filter = ""
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None


Filters = Annotated[JobFilters, Depends()]


def _job_rows(service: FactoryService, caller: Caller, f: JobFilters) -> dict[str, Any]:
    if f.project and not caller.may_use(f.project):
        raise Forbidden(f"not a member of project {f.project!r}")
    states = [f.state] if f.state else None
    rows = service.jobs(f.project or None, states, f.user or None, PAGE, projects=scope(caller), before=f.before)
    live = service.telemetry.jobs
    return {
        "rows": rows,
        "live": {r.id: live[r.id] for r in rows if r.id in live},
        "next": rows[-1].id if len(rows) == PAGE else None,
        "filters": {"state": f.state, "project": f.project, "user": f.user},
        "states": [str(s) for s in JobState],
    }


@router.get("/jobs")
async def jobs(service: ServiceDep, caller: WebCaller, filters: Filters) -> HTMLResponse:
    data = await asyncio.to_thread(_job_rows, service, caller, filters)
    return _html("jobs.html", caller=caller, page="jobs", **data)


@router.get("/ui/jobs")
async def jobs_fragment(service: ServiceDep, caller: WebCaller, filters: Filters) -> HTMLResponse:
    return _html("_jobs.html", **await asyncio.to_thread(_job_rows, service, caller, filters))


async def _job(service: FactoryService, caller: Caller, job_id: int) -> dict[str, Any]:
    row = await visible_job(service, caller, job_id)
    history = await asyncio.to_thread(service.history, job_id)
    usage = await asyncio.to_thread(service.usage_of, job_id)
    queued = str(row.state) == JobState.QUEUED
    return {
        "job": row,
        "history": history,
        "usage": usage,
        "pending": service.pending_reason(job_id) if queued else "",
        "estimated_start": service.estimate_start(job_id) if queued else None,
        "active": not row.state.terminal,
    }


@router.get("/jobs/{job_id}")
async def job_page(job_id: JobId, service: ServiceDep, caller: WebCaller) -> HTMLResponse:
    return _html("job.html", caller=caller, page="jobs", **await _job(service, caller, job_id))


@router.get("/ui/jobs/{job_id}/state")
async def job_state(job_id: JobId, service: ServiceDep, caller: WebCaller) -> HTMLResponse:
    return _html("_job_state.html", **await _job(service, caller, job_id))


@router.get("/ui/jobs/{job_id}/log")
async def job_log(job_id: JobId, service: ServiceDep, caller: WebCaller) -> HTMLResponse:
    row = await visible_job(service, caller, job_id)
    text = await asyncio.to_thread(_tail, service.log_paths(row))
    return _html("_log.html", text=text)


def _tail(paths: list[Path]) -> str:
    parts = []
    for k, path in enumerate(paths):
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(max(0, size - LOG_TAIL))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        parts.append(data if len(paths) == 1 else "".join(f"[rank {k}] {line}\n" for line in data.splitlines()))
    return "".join(parts)


@router.get("/ui/jobs/{job_id}/series.json")
async def job_series(job_id: JobId, service: ServiceDep, caller: WebCaller) -> dict[str, Any]:
    """The job's GPU utilisation over time: its GPUs' stored minutes, then the live reading."""
    row = await visible_job(service, caller, job_id)
    samples = await asyncio.to_thread(service.store.gpu_samples_of_job, job_id)
    # Its GPUs' recent readings while it runs (mean over its GPUs per reading), after the minutes stored before them.
    recent: dict[float, list[float]] = {}
    if not row.state.terminal and row.placement is not None and row.started_at is not None:
        for node, idx in row.placement.parts:
            for g in idx:
                for at, util in service.telemetry.recent.get((node, g), ()):
                    if at >= row.started_at:
                        recent.setdefault(at, []).append(util)
    first = min(recent, default=float("inf"))
    points = [(s.at, s.utilization) for s in samples if s.at < first]
    points += [(at, sum(u) / len(u)) for at, u in sorted(recent.items())]
    return {"at": [p[0] for p in points], "utilization": [p[1] for p in points]}


@router.post("/ui/jobs/{job_id}/cancel")
async def cancel(job_id: JobId, request: Request, service: ServiceDep, caller: WebCaller) -> Response:
    if request.headers.get("hx-request") != "true":  # a form on another site cannot send it
        raise Forbidden("changes come from the dashboard's own page")
    row = await visible_job(service, caller, job_id)
    caller.require_project(row.project)
    with contextlib.suppress(InvalidTransition):  # it ended meanwhile: the state shown says so
        await service.cancel(job_id, caller.user)
    return await job_state(job_id, service, caller)


@router.get("/projects")
async def projects(service: ServiceDep, caller: WebCaller) -> HTMLResponse:
    accounts = [a for a in service.projects() if caller.may_use(a.project)]
    order = sorted(accounts, key=lambda a: (a.history_gpu_s / a.settings.weight, a.project))
    rank = {a.project: k + 1 for k, a in enumerate(order)}
    return _html(
        "projects.html",
        caller=caller,
        page="projects",
        accounts=accounts,
        rank=rank,
        policy=service.factory.settings.policy,
    )


@router.get("/usage")
async def usage_page(caller: WebCaller, days: Annotated[int, Query(ge=1, le=366)] = 30) -> HTMLResponse:
    return _html("usage.html", caller=caller, page="usage", days=days)


@router.get("/ui/usage.json")
async def usage_data(
    service: ServiceDep, caller: WebCaller, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> Mapping[str, Any]:
    """GPU-hours allocated per project per day, the last `days` days (UTC days)."""
    end = (int(time.time()) // 86400 + 1) * 86400
    return await asyncio.to_thread(daily, service.store, end - days * 86400, end, scope(caller))


REPORT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.html$"


def _reports_dir(service: FactoryService) -> Path:
    return service.settings.home / "reports"


@router.get("/reports")
async def reports(service: ServiceDep, caller: WebCaller) -> HTMLResponse:
    """The twin's reports kept in the home's `reports/` (`aifactory twin run --report ...`): an
    admin's, as they show every project."""
    folder = _reports_dir(service)
    found = sorted(p.name for p in folder.glob("*.html")) if caller.admin and folder.is_dir() else []
    return _html("reports.html", caller=caller, page="reports", reports=found, folder=folder)


@router.get("/reports/{name}")
async def report_file(
    name: Annotated[str, PathParam(pattern=REPORT_NAME)], service: ServiceDep, caller: WebCaller
) -> Response:
    caller.require_admin()
    path = _reports_dir(service) / name
    if not path.is_file():
        return HTMLResponse("no such report", status_code=404)
    # A report is a self-contained page the twin wrote: it runs no script of ours, and may load nothing.
    headers = {"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"}
    return HTMLResponse(await asyncio.to_thread(path.read_text, "utf-8", "replace"), headers=headers)


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(status_code=204)
