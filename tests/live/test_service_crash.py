"""Crash safety for real: kill -9 a server process while jobs run, then open the factory again.

A child Python process opens FactoryService on a temp home with 3 virtual GPUs and
submits six jobs: three start (two wait for a gate file, one sleeps), three queue.
The test SIGKILLs that process, SIGKILLs the sleeping job's process group too (its
process dies while no server is up), reopens the service in-process and checks:
the queued jobs were still queued and then run, the two survivors were re-attached
and end with their real exit codes, the dead one failed with a reason, and every
job ends in exactly one terminal state.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aifactory.core import JobState
from aifactory.live.executors.node import LOST
from aifactory.live.service import FactoryService
from aifactory.live.settings import LiveSettings
from aifactory.live.store import Store

pytestmark = pytest.mark.usefixtures("no_leftovers")

SERVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from aifactory.core import JobSpec
    from aifactory.live.service import FactoryService
    from aifactory.live.settings import LiveSettings

    home, gate = Path(sys.argv[1]), sys.argv[2]
    hold = f"import os, sys, time\\nprint('ready', flush=True)\\nwhile not os.path.exists({gate!r}): time.sleep(0.02)\\n"

    def job(code):
        return JobSpec(command=(sys.executable, "-c", code))

    async def main():
        svc = await FactoryService.open(LiveSettings(home=home, gpus=3))
        ids = {
            "ok": (await svc.submit(job(hold + "raise SystemExit(0)"))).id,
            "three": (await svc.submit(job(hold + "raise SystemExit(3)"))).id,
            "doomed": (await svc.submit(job("import time; print('ready', flush=True); time.sleep(60)"))).id,
            "queued": [(await svc.submit(job("print('late')"))).id for _ in range(3)],
        }
        print(json.dumps(ids), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def _ready(home: Path, job_id: int) -> bool:
    log = home / "logs" / f"job-{job_id}.log"
    return log.exists() and "ready" in log.read_text()


def _start_server(home: Path, gate: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(home), str(gate)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "AIFACTORY_HOME": str(home)},
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    assert line, "the server process died before submitting"
    return server, json.loads(line)


def test_kill_dash_nine_loses_no_job(tmp_path: Path) -> None:
    home, gate = tmp_path / "home", tmp_path / "gate"
    server, ids = _start_server(home, gate)
    ok, three, doomed, queued = ids["ok"], ids["three"], ids["doomed"], ids["queued"]
    assert isinstance(ok, int) and isinstance(three, int) and isinstance(doomed, int) and isinstance(queued, list)
    deadline = time.monotonic() + 20
    while not all(_ready(home, j) for j in (ok, three, doomed)):
        assert time.monotonic() < deadline, "the running jobs never started"
        time.sleep(0.02)
    server.send_signal(signal.SIGKILL)
    server.wait()
    server.stdout.close()  # type: ignore[union-attr]

    with Store(f"sqlite:///{home / 'factory.db'}") as store:
        before = {row.id: row for row in store.list_jobs()}
    assert {before[j].state for j in (ok, three, doomed)} == {JobState.RUNNING}
    assert {before[j].state for j in queued} == {JobState.QUEUED}
    dead_group = before[doomed].pgid
    assert dead_group is not None
    os.killpg(dead_group, signal.SIGKILL)  # this job's process dies while no server is up

    async def reopen() -> dict[int, JobState]:
        async with await FactoryService.open(LiveSettings(home=home, gpus=3)) as svc:
            lost = await svc.wait(doomed, 20)
            assert (lost.state, lost.reason, lost.exit_code) == (JobState.FAILED, LOST, None)
            assert svc.job(ok).state is JobState.RUNNING and svc.job(three).state is JobState.RUNNING
            late = [await svc.wait(j, 20) for j in queued]  # the freed GPU runs the queue
            assert all(r.state is JobState.SUCCEEDED for r in late)
            gate.touch()
            survivor, failed = await svc.wait(ok, 20), await svc.wait(three, 20)
            assert (survivor.state, survivor.exit_code) == (JobState.SUCCEEDED, 0)
            assert (failed.state, failed.exit_code, failed.reason) == (JobState.FAILED, 3, "exit code 3")
            assert survivor.attempts == 1 and survivor.pid == before[ok].pid  # the same process, not a rerun
            for job_id in (ok, three, doomed, *queued):
                states = [e.new for e in svc.history(job_id)]
                assert sum(s.terminal for s in states) == 1 and states[-1].terminal, (job_id, states)
            return {row.id: row.state for row in svc.jobs()}

    final = asyncio.run(asyncio.wait_for(reopen(), 60))
    assert sorted(final) == sorted([ok, three, doomed, *queued])
    assert all(state.terminal for state in final.values())
