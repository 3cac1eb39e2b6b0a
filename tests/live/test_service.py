"""FactoryService in-process with real subprocess jobs and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from aifactory.core import InvalidTransition, JobSpec, JobState, NotFound, SpecError
from aifactory.live.service import FactoryService
from aifactory.live.settings import LiveSettings
from aifactory.live.store import Store

pytestmark = pytest.mark.usefixtures("no_leftovers")

T = TypeVar("T")
PY = sys.executable


def run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(coro(), 60))  # type: ignore[arg-type]


def py(code: str, gpus: float = 1, **kw: object) -> JobSpec:
    return JobSpec(command=(PY, "-c", code), gpus=gpus, **kw)  # type: ignore[arg-type]


def settings(home: Path, gpus: int = 2, db_url: str | None = None, **kw: object) -> LiveSettings:
    kw.setdefault("kill_grace_s", 0.5)
    return LiveSettings(home=home, db_url=db_url, gpus=gpus, **kw)  # type: ignore[arg-type]


async def wait_for_text(path: Path, text: str) -> None:
    while not (path.exists() and text in path.read_text()):
        await asyncio.sleep(0.02)


def test_jobs_run_to_their_real_ends_and_the_history_says_when(live_home: Path, store_url: str) -> None:
    async def main() -> None:
        async with await FactoryService.open(settings(live_home, db_url=store_url)) as svc:
            ok = await svc.submit(py("import os; print('gpus', os.environ['CUDA_VISIBLE_DEVICES'])", user="ada"))
            bad = await svc.submit(py("raise SystemExit(3)", project="default"))
            assert ok.state is JobState.RUNNING and ok.placement is not None
            ok, bad = await svc.wait(ok.id, 20), await svc.wait(bad.id, 20)
            assert ok.pid is not None and ok.pgid == ok.pid and ok.log_path == str(svc.log_path(ok.id))
            assert (ok.state, ok.exit_code, ok.user) == (JobState.SUCCEEDED, 0, "ada")
            assert (bad.state, bad.exit_code, bad.reason) == (JobState.FAILED, 3, "exit code 3")
            assert "gpus 0" in svc.log_path(ok.id).read_text()
            history = svc.history(ok.id)
            assert [(e.old, e.new) for e in history] == [
                (None, JobState.QUEUED),
                (JobState.QUEUED, JobState.RUNNING),
                (JobState.RUNNING, JobState.SUCCEEDED),
            ]
            assert history[0].at <= history[1].at <= history[2].at == ok.finished_at
            assert [r.id for r in svc.jobs(user="ada")] == [ok.id]
            assert [r.id for r in svc.jobs(state="failed")] == [bad.id]
            assert svc.job(bad.id) == bad

    run(main)


def test_bad_spec_names_the_field_and_stores_nothing(live_home: Path) -> None:
    async def main() -> None:
        async with await FactoryService.open(settings(live_home)) as svc:
            for spec, field in [
                (py("pass", gpus=0), "gpus"),
                (py("pass", gpus=-1), "gpus"),
                (py("pass", gpus=3), "gpus"),
                (py("pass", project="nope"), "project"),
            ]:
                with pytest.raises(SpecError) as err:
                    await svc.submit(spec)
                assert err.value.field == field
            assert svc.jobs() == []
            assert svc.store.events() == []

    run(main)


def test_queue_drains_in_order_and_views_show_who_holds_what(live_home: Path) -> None:
    gate = live_home.parent / "go"
    hold = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"

    async def main() -> None:
        # fifo: the head blocks the rest (fairshare, the default, would let d start before c)
        async with await FactoryService.open(settings(live_home, gpus=2, policy="fifo")) as svc:
            a = await svc.submit(py(hold))
            b = await svc.submit(py(hold, gpus=0.5))
            c = await svc.submit(py(hold, gpus=2))
            d = await svc.submit(py("pass"))
            assert (a.state, b.state, c.state, d.state) == (JobState.RUNNING, JobState.RUNNING, *[JobState.QUEUED] * 2)
            assert replace(c, pending_reason="") == svc.job(c.id)  # submit's row is what the store holds
            [node] = svc.nodes()
            assert node.holders == ({a.id: 1000}, {b.id: 500})
            [proj] = svc.projects()
            assert (proj.project, proj.settings.quota, proj.in_use, proj.running, proj.pending_jobs) == (
                "default",
                2.0,
                1.5,
                2,
                2,
            )
            assert "largest free block" in svc.pending_reason(c.id) or "GPU" in svc.pending_reason(c.id)
            assert svc.pending_reason(a.id) == ""
            gate.touch()
            rows = [await svc.wait(j.id, 20) for j in (a, b, c, d)]
            assert all(r.state is JobState.SUCCEEDED for r in rows)
            assert rows[2].started_at is not None and rows[3].started_at is not None
            assert rows[2].started_at <= rows[3].started_at  # fifo: d waited behind c
            assert svc.nodes()[0].holders == ({}, {})

    run(main)


def test_cancel_queued_running_and_finished_jobs(live_home: Path) -> None:
    async def main() -> None:
        async with await FactoryService.open(settings(live_home, gpus=1)) as svc:
            running = await svc.submit(py("import time; print('up', flush=True); time.sleep(60)"))
            queued = await svc.submit(py("pass"))
            cancelled = await svc.cancel(queued.id)
            assert (cancelled.state, cancelled.reason) == (JobState.CANCELLED, "cancelled by user")
            await wait_for_text(svc.log_path(running.id), "up")
            t0 = time.monotonic()
            assert (await svc.cancel(running.id)).state is JobState.RUNNING  # stopping
            row = await svc.wait(running.id, 10)
            assert time.monotonic() - t0 < 5
            assert (row.state, row.exit_code) == (JobState.CANCELLED, -15)
            with pytest.raises(InvalidTransition, match="already cancelled"):
                await svc.cancel(running.id)
            with pytest.raises(NotFound):
                await svc.cancel(999)
            with pytest.raises(NotFound):
                svc.history(999)
            with pytest.raises(NotFound):
                svc.pending_reason(999)

    run(main)


def test_time_limit_kills_a_job_that_ignores_sigterm(live_home: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"

    async def main() -> None:
        async with await FactoryService.open(settings(live_home, gpus=1)) as svc:
            job = await svc.submit(py(code, time_limit_s=1.0))
            row = await svc.wait(job.id, 15)
            assert row.finished_at is not None and row.started_at is not None
            took = row.finished_at - row.started_at
            assert (row.state, row.reason) == (JobState.FAILED, "time limit")
            if row.exit_code == -15:  # a loaded box: SIGTERM came before the job got to ignore it
                assert 1.0 <= took < 10
            else:
                assert row.exit_code == -9
                assert 1.0 + 0.5 <= took < 10  # the limit, then the 0.5 s grace

    run(main)


def test_launch_failure_fails_the_job_and_frees_its_gpu(live_home: Path) -> None:
    async def main() -> None:
        async with await FactoryService.open(settings(live_home, gpus=1)) as svc:
            missing = await svc.submit(JobSpec(command=("no-such-program-xyz",)))
            after = await svc.submit(py("pass"))
            row = await svc.wait(missing.id, 10)
            assert (row.state, row.exit_code) == (JobState.FAILED, 127)
            assert "command not found" in row.reason
            assert (await svc.wait(after.id, 10)).state is JobState.SUCCEEDED

    run(main)


def test_close_leaves_jobs_running_and_reopen_reattaches(live_home: Path) -> None:
    gate = live_home.parent / "go"
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\nraise SystemExit(5)"

    async def main() -> None:
        svc = await FactoryService.open(settings(live_home, gpus=1))
        first = await svc.submit(py(code))
        second = await svc.submit(py("pass"))
        await svc.close()
        with Store(svc.settings.database_url) as store:
            pid = store.get_job(first.id).pid
        assert pid is not None and Path(f"/proc/{pid}").exists()
        svc = await FactoryService.open(settings(live_home, gpus=1))
        async with svc:
            assert svc.job(first.id).state is JobState.RUNNING
            assert svc.job(second.id).state is JobState.QUEUED
            gate.touch()
            row = await svc.wait(first.id, 20)
            assert (row.state, row.exit_code) == (JobState.FAILED, 5)
            assert (await svc.wait(second.id, 20)).state is JobState.SUCCEEDED
            assert second.id > first.id and (await svc.submit(py("pass"))).id > second.id

    run(main)


def test_first_start_creates_a_private_home_and_the_default_project(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"

    async def main() -> None:
        async with await FactoryService.open(settings(home, gpus=3, nodes=2)) as svc:
            assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
            assert [(n.name, n.gpu_count) for n in svc.store.load_nodes()] == [("node0", 3), ("node1", 3)]
            assert [(a.project, a.settings.quota) for a in svc.projects()] == [("default", 6.0)]
            job = await svc.submit(py("import time; time.sleep(30)"))
            with pytest.raises(asyncio.TimeoutError):
                await svc.wait(job.id, 0.1)
            await svc.cancel(job.id)
            assert (await svc.wait(job.id, 10)).state is JobState.CANCELLED

    run(main)


def test_bad_settings_are_clear_errors(live_home: Path) -> None:
    from aifactory.core import UnknownName

    async def main() -> None:
        with pytest.raises(SpecError, match="gpus"):
            await FactoryService.open(settings(live_home, gpus=-1))
        with pytest.raises(UnknownName, match="executor"):
            await FactoryService.open(settings(live_home), executor="nope")
        with pytest.raises(UnknownName):
            await FactoryService.open(settings(live_home, policy="nope"))

    run(main)


def test_a_cancel_under_way_survives_a_restart(live_home: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"

    async def main() -> None:
        svc = await FactoryService.open(settings(live_home, gpus=1, kill_grace_s=60))
        job = await svc.submit(py(code))
        await wait_for_text(svc.log_path(job.id), "up")
        await svc.cancel(job.id)  # SIGTERM ignored; the SIGKILL is 60 s away
        await svc.close()  # the server goes down with the cancel under way
        async with await FactoryService.open(settings(live_home, gpus=1, kill_grace_s=0.3)) as again:
            row = await again.wait(job.id, 10)  # the new server stops it, with its own grace
            assert (row.state, row.reason, row.exit_code) == (JobState.CANCELLED, "cancelled by user", -9)

    run(main)


def test_projects_and_departments_are_saved_and_validated(live_home: Path) -> None:
    from aifactory.core import Project
    from aifactory.core.project import Department

    async def main() -> None:
        async with await FactoryService.open(settings(live_home, gpus=2, policy="fairshare")) as svc:
            await svc.set_department(Department("research", quota=2))
            view = await svc.set_project(
                Project("vision", quota=1, department="research", quota_by_model={"virtual": 1})
            )
            assert (view.project, view.settings.quota, view.settings.department, view.in_use) == (
                "vision",
                1.0,
                "research",
                0.0,
            )
            with pytest.raises(SpecError) as err:
                await svc.set_project(Project("bad", quota=-1))
            assert err.value.field == "quota"
            job = await svc.submit(py("pass", project="vision"))
            assert (await svc.wait(job.id, 10)).state is JobState.SUCCEEDED
        async with await FactoryService.open(settings(live_home, gpus=2, policy="fairshare")) as svc:
            assert [a.project for a in svc.projects()] == ["default", "vision"]
            assert svc.factory.projects["vision"].quota_by_model == {"virtual": 1}
            assert list(svc.factory.departments) == ["research"]

    run(main)


def test_a_drained_node_stays_drained_across_a_restart(tmp_path: Path) -> None:
    from aifactory.core.errors import UnknownName

    settings = LiveSettings(home=tmp_path / "home", gpus=1, nodes=2, isolation="none")

    async def main() -> None:
        async with await FactoryService.open(settings) as svc:
            assert (await svc.drain("node1")).up is False
            with pytest.raises(UnknownName):
                await svc.drain("node9")
        async with await FactoryService.open(settings) as svc:
            assert {v.spec.name: v.up for v in svc.nodes()} == {"node0": True, "node1": False}
            await svc.drain("node1", drained=False)
        async with await FactoryService.open(settings) as svc:
            assert all(v.up for v in svc.nodes())

    asyncio.run(main())


def test_node_changes_go_into_the_event_log_with_who_made_them(tmp_path: Path) -> None:
    from aifactory.core import Drain, NodeJoined, NodeSpec, NodeState

    home = tmp_path / "home"

    async def main() -> None:
        async with await FactoryService.open(LiveSettings(home=home, gpus=1, nodes=2, isolation="none")) as svc:
            await svc.drain("node1", by="alice")
            await svc.drain("node1", drained=False, by="alice")
        # Restarted with three nodes, then with one: node2 joined; node1 and node2 are gone.
        async with await FactoryService.open(LiveSettings(home=home, gpus=1, nodes=3, isolation="none")):
            pass
        async with await FactoryService.open(LiveSettings(home=home, gpus=1, nodes=1, isolation="none")):
            pass
        async with await FactoryService.open(LiveSettings(home=home, gpus=1, nodes=2, isolation="none")) as svc:
            rows = svc.store.node_events()
            assert [n.name for n in svc.store.load_nodes()] == ["node0", "node1", "node2"]
        assert [(r.event, r.by) for r in rows] == [
            (Drain("node1"), "alice"),
            (Drain("node1", drained=False), "alice"),
            (NodeJoined(NodeSpec("node2", 1)), ""),
            (NodeState("node1", up=False), ""),
            (NodeState("node2", up=False), ""),  # said once, not at every start
            (NodeState("node1", up=True), ""),  # back
        ]

    asyncio.run(main())
