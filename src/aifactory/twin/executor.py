"""The simulated executor: a job "runs" until its work is done, on the kernel's clock.

It carries out the Factory's actions as the live executors do, but with no process:
- `Launch`: the job exits 0 when its work left is done (now + work left);
- `Kill`: the job exits after `kill_delay_s` (default 0: a simulated process obeys
  SIGTERM at once; None: it uses the whole grace the core gave), or earlier if its
  work runs out first;
- `Preempt`: the job stops after `preempt_delay_s` (None: the core's grace), keeping
  the work up to its last checkpoint. With `checkpoint_every_s` None the job saves
  its progress when told to stop, so only the stop delay is lost; with a period it
  loses the work done since its last periodic checkpoint too.
- a node's death (`lose_node`): its jobs end at once, lost, keeping their work up to the last
  periodic checkpoint (all of it with `checkpoint_every_s` None: the floor's history counts the
  lost attempt's run time in the job's work, so a replay of that history must not lose it twice).

Work is in seconds of run time; GPU-seconds lost = GPUs x (work lost + stop delay).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from aifactory.core.actions import Kill, Launch, Preempt
from aifactory.core.events import Finished
from aifactory.core.job import Placement
from aifactory.twin.kernel import FINISH, Kernel
from aifactory.twin.power import PowerMeter

EXIT_SIGTERM = 143  # 128 + SIGTERM: how a stopped process reports


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    kill_delay_s: float | None = 0.0  # Kill -> exit (s); None: the action's grace
    preempt_delay_s: float | None = None  # Preempt -> exit (s); None: the action's grace
    checkpoint_every_s: float | None = None  # periodic checkpoint (s of run time); None: save on stop


class SimExecutor:
    """Runs simulated jobs; reports each exit to `report` as a core `Finished` event."""

    def __init__(
        self,
        kernel: Kernel,
        report: Callable[[Finished], None],
        work_of: Callable[[int], float],
        settings: ExecutorSettings | None = None,
    ) -> None:
        self.kernel = kernel
        self.report = report
        self.work_of = work_of  # job id -> total work (s of run time), asked at first launch
        self.settings = settings or ExecutorSettings()
        self.work_left: dict[int, float] = {}
        # job id -> (attempt token, started at, work left at start, GPUs)
        self._running: dict[int, tuple[int, float, float, float]] = {}
        self._placed: dict[int, Placement] = {}  # job id -> where it runs (a node's death ends it)
        self._token = 0
        self.preemptions = 0
        self.lost_gpu_s = 0.0  # GPU-seconds of discarded work and stop delays
        self.meter: PowerMeter | None = None  # told when jobs take and give back GPUs
        self.on_release: Callable[[Placement], None] | None = None  # after a job's GPUs went back

    def launch(self, action: Launch) -> None:
        now = self.kernel.now
        left = self.work_left.get(action.job_id)
        if left is None:
            left = self.work_of(action.job_id)
        self._token += 1
        self._running[action.job_id] = (self._token, now, left, action.placement.gpus)
        self._placed[action.job_id] = action.placement
        if self.meter is not None:
            self.meter.held(now, action.placement.gpus)
        self.kernel.schedule(now + left, FINISH, self._exit, (action.job_id, self._token, 0))

    def kill(self, action: Kill) -> None:
        entry = self._running.get(action.job_id)
        if entry is None:
            return
        _, started, left, _ = entry
        delay = action.grace_s if self.settings.kill_delay_s is None else self.settings.kill_delay_s
        now = self.kernel.now
        if started + left <= now + delay:
            return  # the job's own exit comes first
        self._stop(action.job_id, now + delay, requeued=False)

    def preempt(self, action: Preempt) -> None:
        entry = self._running.get(action.job_id)
        if entry is None:
            return
        _, started, left, gpus = entry
        now = self.kernel.now
        delay = action.grace_s if self.settings.preempt_delay_s is None else self.settings.preempt_delay_s
        done = now - started
        every = self.settings.checkpoint_every_s
        saved = done if every is None else math.floor(done / every) * every
        self.work_left[action.job_id] = left - saved
        self.preemptions += 1
        self.lost_gpu_s += gpus * (done - saved + delay)
        self._stop(action.job_id, now + delay, requeued=True)

    def lose_node(self, node: str) -> None:
        """The node died: each job running there ends now as lost (the core requeues it)."""
        now = self.kernel.now
        every = self.settings.checkpoint_every_s
        for job_id in [j for j, p in self._placed.items() if node in p.nodes and j in self._running]:
            _, started, left, gpus = self._running.pop(job_id)
            placement = self._placed.pop(job_id)
            done = now - started
            saved = done if every is None else math.floor(done / every) * every
            self.work_left[job_id] = left - saved
            self.lost_gpu_s += gpus * (done - saved)
            if self.meter is not None:
                self.meter.held(now, -placement.gpus)
            self.report(Finished(job_id, None, f"node {node} lost", node_lost=True))

    def _stop(self, job_id: int, at: float, requeued: bool) -> None:
        """Replace the job's pending exit with a SIGTERM exit at `at`."""
        self._token += 1
        _, started, left, gpus = self._running[job_id]
        self._running[job_id] = (self._token, started, left, gpus)
        code = -EXIT_SIGTERM if requeued else EXIT_SIGTERM  # sign: keep the work left for the next attempt
        self.kernel.schedule(at, FINISH, self._exit, (job_id, self._token, code))

    def _exit(self, arg: tuple[int, int, int]) -> None:
        job_id, token, code = arg
        entry = self._running.get(job_id)
        if entry is None or entry[0] != token:
            return  # superseded by a kill or preemption
        del self._running[job_id]
        placement = self._placed.pop(job_id, None)
        if code >= 0:
            self.work_left.pop(job_id, None)  # done or killed: no further attempt
        if self.meter is not None and placement is not None:
            self.meter.held(self.kernel.now, -placement.gpus)
        self.report(Finished(job_id, abs(code)))
        if self.on_release is not None and placement is not None:
            self.on_release(placement)
