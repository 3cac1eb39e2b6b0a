"""The local executor with real subprocesses: env, logs, exit codes, kill, re-attach, no zombies."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from aifactory.core import Finished, JobSpec, Placement, UnknownName
from aifactory.live.executors import get_executor
from aifactory.live.executors.local import LocalExecutor
from aifactory.live.executors.node import LOST

pytestmark = pytest.mark.usefixtures("no_leftovers")

T = TypeVar("T")
PY = sys.executable
ONE = Placement((("node0", (0,)),))


def run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(coro(), 30))  # type: ignore[arg-type]


class Recorder:
    """An executor plus the Finished events it reported, awaitable by job id."""

    def __init__(self, logs: Path) -> None:
        self.done: dict[int, Finished] = {}
        self.arrived = asyncio.Event()
        self.ex = LocalExecutor(logs, self._on)

    def _on(self, ev: Finished) -> None:
        assert ev.job_id not in self.done, f"job {ev.job_id} reported twice"
        self.done[ev.job_id] = ev
        self.arrived.set()

    async def finished(self, job_id: int) -> Finished:
        while job_id not in self.done:
            self.arrived.clear()
            await self.arrived.wait()
        return self.done[job_id]


def py(code: str, **kw: object) -> JobSpec:
    return JobSpec(command=(PY, "-c", code), **kw)  # type: ignore[arg-type]


def gone(pid: int) -> bool:
    """Neither running nor a zombie: exited and reaped."""
    return not Path(f"/proc/{pid}").exists()


async def wait_for_text(path: Path, text: str) -> None:
    while not (path.exists() and text in path.read_text()):
        await asyncio.sleep(0.02)


def test_job_sees_its_gpus_env_and_workdir_and_logs_both_streams(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code = (
        "import os, sys; e = os.environ;"
        "print(e['CUDA_VISIBLE_DEVICES'], e['AIFACTORY_JOB_ID'], e['AIFACTORY_GPU_FRACTION'], e['LR'], os.getcwd());"
        "print('to stderr', file=sys.stderr); print('group', os.getpgid(0), os.getsid(0))"
    )

    async def main() -> None:
        r = Recorder(tmp_path / "logs")
        info = await r.ex.start(7, py(code, env={"LR": "3e-4"}, workdir=str(work)), Placement((("node0", (1, 3)),)))
        assert info is not None and info.pgid == info.pid
        assert await r.finished(7) == Finished(7, 0, "")
        text = info.log_path.read_text()
        assert f"1,3 7 1 3e-4 {work}" in text
        assert "to stderr" in text
        assert f"group {info.pid} {info.pid}" in text  # its own session and process group, led by the wrapper
        assert info.log_path == tmp_path / "logs" / "job-7.log"
        assert gone(info.pid)

    run(main)


def test_exit_codes_and_fractions(tmp_path: Path) -> None:
    async def main() -> None:
        r = Recorder(tmp_path / "logs")
        half = Placement((("node0", (2,)),), milli=500)
        await r.ex.start(1, py("import os, sys; sys.exit(int(float(os.environ['AIFACTORY_GPU_FRACTION']) * 10))"), half)
        await r.ex.start(2, py("import os; os.kill(os.getpid(), 15)"), ONE)
        assert (await r.finished(1)).exit_code == 5
        assert (await r.finished(2)).exit_code == -15

    run(main)


def test_launch_failures_are_finished_events_not_exceptions(tmp_path: Path) -> None:
    async def main() -> None:
        r = Recorder(tmp_path / "logs")
        await r.ex.start(1, JobSpec(command=("no-such-program-xyz",)), ONE)
        await r.ex.start(2, JobSpec(command=("true",), workdir=str(tmp_path / "missing")), ONE)
        (tmp_path / "script.sh").write_text("#!/bin/sh\necho hi\n")  # not executable
        await r.ex.start(3, JobSpec(command=(str(tmp_path / "script.sh"),)), ONE)
        one, two, three = await r.finished(1), await r.finished(2), await r.finished(3)
        assert (one.exit_code, two.exit_code, three.exit_code) == (127, 126, 126)
        assert "command not found: 'no-such-program-xyz'" in one.reason
        assert two.reason == "cannot enter the job's workdir"
        assert f"cannot enter workdir {tmp_path / 'missing'}" in r.ex.log_path(2).read_text()
        assert "cannot run" in three.reason and "script.sh" in three.reason
        assert "aifactory: command not found: no-such-program-xyz" in r.ex.log_path(1).read_text()
        assert await r.ex.start(5, JobSpec(command=()), ONE) is None
        assert (await r.finished(5)).reason == "empty command"

        (tmp_path / "logs").rename(tmp_path / "moved")  # the log file cannot be opened
        assert await r.ex.start(4, JobSpec(command=("true",)), ONE) is None
        four = await r.finished(4)
        assert four.exit_code == 126 and "cannot start job" in four.reason

    run(main)


def test_kill_sends_sigterm_to_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"

    async def main() -> None:
        r = Recorder(tmp_path / "logs")
        info = await r.ex.start(1, JobSpec(command=("sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait")), ONE)
        assert info is not None
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.02)
        grandchild = int(pidfile.read_text())
        t0 = time.monotonic()
        r.ex.stop(1, grace_s=20)
        done = await r.finished(1)
        assert time.monotonic() - t0 < 5
        assert done.exit_code == -15
        for _ in range(100):  # the grandchild is the init process's to reap
            if not Path(f"/proc/{grandchild}").exists() or "Z" in _state(grandchild):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the job's grandchild survived the kill")
        assert gone(info.pid)

    run(main)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def test_sigkill_after_grace_when_sigterm_is_ignored(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )

    async def main() -> None:
        r = Recorder(tmp_path / "logs")
        info = await r.ex.start(1, py(code), ONE)
        assert info is not None
        await wait_for_text(info.log_path, "ready")
        t0 = time.monotonic()
        r.ex.stop(1, grace_s=0.4)
        done = await r.finished(1)
        assert 0.4 <= time.monotonic() - t0 < 5
        assert done.exit_code == -signal.SIGKILL
        assert gone(info.pid)

    run(main)


def test_kill_during_launch_is_carried_out_once_started(tmp_path: Path) -> None:
    async def main() -> None:
        r = Recorder(tmp_path / "logs")
        launching = r.ex.start(1, JobSpec(command=("sleep", "60")), ONE)
        r.ex.stop(1, grace_s=30)  # before the spawn has even begun
        info = await launching
        assert info is not None
        t0 = time.monotonic()
        assert (await r.finished(1)).exit_code == -15  # SIGTERM, not the SIGKILL 30 s later
        assert time.monotonic() - t0 < 10
        assert gone(info.pid)

    run(main)


def test_a_stop_right_after_launch_is_never_lost(tmp_path: Path) -> None:
    """SIGTERM at any moment of the wrapper's start: the job stops now, not at the SIGKILL 30 s later."""

    async def main() -> None:
        r = Recorder(tmp_path / "logs")
        infos = []
        for job_id in range(1, 13):
            info = await r.ex.start(job_id, JobSpec(command=("sleep", "60")), ONE)
            assert info is not None
            infos.append(info)
            await asyncio.sleep(0.002 * (job_id % 6))  # hit the wrapper at different points of its start
            r.ex.stop(job_id, grace_s=30)
        t0 = time.monotonic()
        done = [await r.finished(job_id) for job_id in range(1, 13)]
        assert time.monotonic() - t0 < 10
        assert {d.exit_code for d in done} == {-15}
        assert all(gone(i.pid) for i in infos)

    run(main)


def test_attach_after_close_sees_the_real_exit_code(tmp_path: Path) -> None:
    def gated(gate: Path, code: int) -> JobSpec:
        return py(
            f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\nraise SystemExit({code})"
        )

    async def main() -> None:
        first = Recorder(tmp_path / "logs")
        info = await first.ex.start(1, gated(tmp_path / "gate1", 4), ONE)
        quick = await first.ex.start(2, gated(tmp_path / "gate2", 6), ONE)
        assert info is not None and quick is not None
        await first.ex.close()  # stop watching, like a server going down
        (tmp_path / "gate2").touch()  # job 2 ends while nobody watches
        while _state(quick.pid) != "Z":  # exited, not yet reaped: it was our child
            await asyncio.sleep(0.02)
        second = Recorder(tmp_path / "logs")
        second.ex.attach(1, info.pid, info.pgid, str(info.log_path))
        second.ex.attach(2, quick.pid, quick.pgid, str(quick.log_path))
        assert second.ex.watched == {1}
        assert await second.finished(2) == Finished(2, 6, "")
        (tmp_path / "gate1").touch()
        assert await second.finished(1) == Finished(1, 4, "")
        assert first.done == {}
        assert gone(info.pid) and gone(quick.pid)

    run(main)


def test_attach_to_a_dead_or_foreign_process_is_lost(tmp_path: Path) -> None:
    async def main() -> None:
        r = Recorder(tmp_path / "logs")
        r.ex.attach(1, os.getpid(), os.getpgid(0), None)  # alive, but not this job's wrapper
        r.ex.attach(2, None, None, None)  # crashed between the launch decision and the spawn
        # Crashed after the spawn but before recording the pid: the wrapper's own pid file tells.
        log3 = r.ex.log_path(3)
        Path(f"{log3}.pid").write_text("999999999")
        Path(f"{log3}.exit").write_text("0 \n")
        r.ex.attach(3, None, None, None)
        assert await r.finished(1) == Finished(1, None, LOST)
        never = await r.finished(2)
        assert (never.exit_code, never.started) == (None, False) and never.reason.startswith("requeued")
        assert await r.finished(3) == Finished(3, 0, "")
        assert r.ex.watched == set()

    run(main)


def test_registry_by_name(tmp_path: Path) -> None:
    ex = get_executor("local", tmp_path, lambda ev: None)
    assert isinstance(ex, LocalExecutor) and ex.name == "local"
    with pytest.raises(UnknownName, match="did you mean 'local'"):
        get_executor("locl", tmp_path, lambda ev: None)


def test_without_pidfds_exits_are_polled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")  # a kernel older than 5.3

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)

    async def main() -> None:
        r = Recorder(tmp_path / "logs")
        quick = await r.ex.start(1, py("raise SystemExit(3)"), ONE)
        slow = await r.ex.start(2, JobSpec(command=("sleep", "60")), ONE)
        assert quick is not None and slow is not None
        assert await r.finished(1) == Finished(1, 3, "")
        r.ex.stop(2, grace_s=30)
        assert (await r.finished(2)).exit_code == -15
        assert gone(quick.pid) and gone(slow.pid)

    run(main)
