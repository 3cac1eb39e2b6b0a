"""The event kernel's ordering and the simulated executor's work accounting."""

from __future__ import annotations

import pytest

from aifactory.core.actions import Kill, Launch, Preempt
from aifactory.core.errors import SpecError
from aifactory.core.events import Finished
from aifactory.core.job import JobSpec, Placement
from aifactory.twin.executor import EXIT_SIGTERM, ExecutorSettings, SimExecutor
from aifactory.twin.kernel import FINISH, SAMPLE, SUBMIT, TICK, Kernel


def test_ties_run_by_priority_then_in_scheduling_order() -> None:
    k = Kernel()
    seen: list[str] = []
    k.schedule(5, SUBMIT, seen.append, "submit-1")
    k.schedule(5, FINISH, seen.append, "finish")
    k.schedule(5, SUBMIT, seen.append, "submit-2")
    k.schedule(5, SAMPLE, seen.append, "sample")
    k.schedule(5, TICK, seen.append, "tick")
    k.schedule(1, SAMPLE, seen.append, "early")
    k.run()
    assert seen == ["early", "finish", "tick", "submit-1", "submit-2", "sample"]
    assert k.now == 5 and k.steps == 6


def test_run_until_stops_the_clock_there_and_step_moves_one_entry() -> None:
    k = Kernel()
    seen: list[float] = []
    k.schedule_many([(t, SUBMIT, seen.append, t) for t in (3.0, 1.0, 2.0)])
    k.run(until=1.5)
    assert seen == [1.0] and k.now == 1.5
    k.step()
    assert seen == [1.0, 2.0] and k.now == 2.0 and k.peek() == 3.0
    with pytest.raises(SpecError, match="time"):
        k.schedule(1.0, SUBMIT, seen.append)


def make(settings: ExecutorSettings) -> tuple[Kernel, SimExecutor, list[tuple[float, Finished]]]:
    k = Kernel()
    out: list[tuple[float, Finished]] = []
    ex = SimExecutor(k, lambda ev: out.append((k.now, ev)), lambda _id: 100.0, settings)
    return k, ex, out


PLACE = Placement((("n0", (0, 1)),))  # 2 GPUs
SPEC = JobSpec(command=())


def test_preempted_job_resumes_with_the_work_it_saved() -> None:
    k, ex, out = make(ExecutorSettings(preempt_delay_s=5, checkpoint_every_s=30))
    ex.launch(Launch(1, SPEC, PLACE))
    k.run(until=70)
    ex.preempt(Preempt(1, "reclaim", 99))
    k.run()
    # Saved 60 s (two checkpoints); exits 5 s later; the natural exit at 100 is void.
    assert out == [(75, Finished(1, EXIT_SIGTERM))]
    assert ex.work_left[1] == 40 and ex.preemptions == 1
    assert ex.lost_gpu_s == pytest.approx(2 * (10 + 5))
    assert k.now == 100  # the void exit entry still moved the clock
    ex.launch(Launch(1, SPEC, PLACE))
    k.run()
    assert out[-1] == (140, Finished(1, 0)) and 1 not in ex.work_left


def test_kill_after_the_grace_unless_the_job_ends_first() -> None:
    k, ex, out = make(ExecutorSettings(kill_delay_s=None))
    ex.launch(Launch(1, SPEC, PLACE))
    ex.launch(Launch(2, SPEC, PLACE))
    k.run(until=10)
    ex.kill(Kill(1, "cancelled", 20))  # exits at 30
    ex.kill(Kill(2, "cancelled", 95))  # its own end at 100 comes first
    k.run()
    assert out == [(30, Finished(1, EXIT_SIGTERM)), (100, Finished(2, 0))]
