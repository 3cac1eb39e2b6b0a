"""The discrete-event kernel: a heap keyed `(time, priority, sequence)`.

Modelled on SimPy's `core.py`: entries at the same time run by priority, then in
the order they were scheduled, so a seeded replay always runs the same. The
clock only moves when `step()` pops an entry; nothing here reads the wall clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count
from typing import Any

from aifactory.core.errors import SpecError

# Priorities for entries at the same instant (lower runs first). Node events go first (a node
# that joins at an instant takes that instant's work), then finishes so freed GPUs are seen by
# the submits and ticks of the same second; samplers go last so they observe the settled state
# of an instant.
NODE = -1
FINISH = 0
TICK = 1
SUBMIT = 2
JOB = 3  # a hold, update or requeue: after the submits of its instant (its job may be among them)
SAMPLE = 4

Callback = Callable[[Any], None]


class Kernel:
    """A virtual clock and its agenda of callbacks."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, int, Callback, Any]] = []
        self._seq = count()
        self.steps = 0  # entries processed: the replay's event count

    def schedule(self, at: float, priority: int, callback: Callback, arg: Any = None) -> None:
        """Run `callback(arg)` at virtual time `at` (seconds); never in the past."""
        if at < self.now:
            raise SpecError("time", f"cannot schedule at {at} s, the clock is at {self.now} s")
        heapq.heappush(self._heap, (at, priority, next(self._seq), callback, arg))

    def schedule_many(self, entries: list[tuple[float, int, Callback, Any]]) -> None:
        """Schedule a batch (a whole trace's arrivals) in O(n) by re-heapifying once."""
        seq = self._seq
        for at, priority, callback, arg in entries:
            if at < self.now:
                raise SpecError("time", f"cannot schedule at {at} s, the clock is at {self.now} s")
            self._heap.append((at, priority, next(seq), callback, arg))
        heapq.heapify(self._heap)

    def clock(self) -> float:
        """The virtual time now (s): the clock the twin's driver reads."""
        return self.now

    def peek(self) -> float | None:
        """Time of the next entry, or None when the agenda is empty."""
        return self._heap[0][0] if self._heap else None

    def step(self) -> None:
        """Pop the next entry, advance the clock to it and run it."""
        at, _, _, callback, arg = heapq.heappop(self._heap)
        self.now = at
        self.steps += 1
        callback(arg)

    def run(self, until: float | None = None) -> None:
        """Run until the agenda is empty, or up to (and including) time `until`."""
        heap = self._heap
        pop = heapq.heappop
        steps = 0
        try:
            while heap and (until is None or heap[0][0] <= until):
                at, _, _, callback, arg = pop(heap)
                self.now = at
                steps += 1
                callback(arg)
        finally:
            self.steps += steps
        if until is not None and until > self.now:
            self.now = until
