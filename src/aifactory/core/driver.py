"""The one loop both clocks run: an event in, `Factory.handle(event, now)`, the state changes
persisted, the actions carried out, the next wake-up armed.

The live shell (wall clock, the store, a real executor) and the twin (virtual clock, its
recorder, the simulated executor) are two configurations of this `Driver`, and so are the tests'
simulators: what one decides, the others decide. The driver itself does no I/O and reads no
clock: both are injected. Where events come from, and how a wake-up is slept towards, is the
shell's business (an asyncio queue with a timeout, or the twin's event heap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aifactory.core.actions import Action, Kill, Launch, Noted, Preempt, StateChanged
from aifactory.core.events import Event
from aifactory.core.factory import Factory

Clock = Callable[[], float]


class Executor(Protocol):
    """Carries out the core's actions: processes on this machine, on a Ray cluster, or simulated.

    It reports every end of a job as a `Finished` event to whoever drives it, later (never from
    inside these calls), and never raises for a job's own failure.
    """

    def launch(self, action: Launch) -> None: ...

    def kill(self, action: Kill) -> None:
        """Stop the job: SIGTERM, SIGKILL after `action.grace_s`; it ends as the core decided."""
        ...

    def preempt(self, action: Preempt) -> None:
        """Stop the job so that its GPUs can go elsewhere; the core queues it again."""
        ...


def _ignore(_: Any) -> None:
    """The default for a hook nobody set."""


class Driver:
    """Drives a `Factory` with an injected clock and executor (see the module docstring).

    - `persist(actions)`: called with each round's actions before any is carried out (the live
      store saves the state changes in one transaction; None: nothing to persist, as in the twin);
    - `on_change(change)`: each StateChanged, in order, after `persist` (the twin's recorder; the
      live shell's waiters);
    - `alarm(at)`: the core wants a `Tick` at `at`, earlier than any wake-up armed before.
    """

    def __init__(
        self,
        factory: Factory,
        clock: Clock,
        executor: Executor,
        alarm: Callable[[float], None],
        persist: Callable[[Sequence[Action]], None] | None = None,
        on_change: Callable[[StateChanged], None] = _ignore,
        on_note: Callable[[Noted], None] = _ignore,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.executor = executor
        self.alarm = alarm
        self.persist = persist
        self.armed: float | None = None  # the wake-up the shell will deliver next (None: none)
        self._dispatch: dict[type, Callable[[Any], None]] = {
            StateChanged: on_change,
            Noted: on_note,
            Launch: executor.launch,
            Kill: executor.kill,
            Preempt: executor.preempt,
        }

    def decide(self, event: Event) -> list[Action]:
        """The core's actions for `event` now, not yet carried out (SpecError etc. as the core raises)."""
        return self.factory.handle(event, self.clock())

    def handle(self, event: Event) -> None:
        """Decide and carry out one event (the twin's whole step)."""
        now = self.clock()
        self.commit(self.factory.handle(event, now), now)

    def commit(self, actions: Sequence[Action], now: float | None = None) -> None:
        """Carry out what was decided (one event's actions, or a batch's): persist first, then act."""
        if self.persist is not None:
            self.persist(actions)
        dispatch = self._dispatch
        for action in actions:
            dispatch[type(action)](action)
        self._arm(self.clock() if now is None else now)

    def fired(self, now: float) -> None:
        """The shell delivered the armed wake-up (or is past it): the next one may be armed."""
        if self.armed is not None and self.armed <= now:
            self.armed = None

    def _arm(self, now: float) -> None:
        wake = self.factory.next_wakeup()
        if wake is None:
            return
        armed = self.armed
        if armed is None or wake < armed or armed < now:
            self.armed = wake
            self.alarm(wake)
