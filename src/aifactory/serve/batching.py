"""Dynamic batching: requests queue up and run as one model call.

A batch closes when it holds `max_batch` rows or `max_wait_s` has passed since its first
request arrived, whichever comes first. The model runs on one worker thread, off the event
loop, so the server keeps accepting while a batch computes; requests arriving meanwhile form
the next batch (a model quick enough for the caller's `inline` test runs on the loop itself).
With `max_batch=1` and no wait every request runs alone (batching off).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from aifactory.core.errors import AifactoryError, SpecError


class Sliceable(Protocol):
    """A batch's outputs, one per row: each request of the batch gets `outputs[start:stop]`."""

    def __getitem__(self, rows: slice, /) -> Any: ...

    def __len__(self) -> int: ...


Out = TypeVar("Out", bound=Sliceable)
Tag = TypeVar("Tag")
# runner(x: (B, F) float32) -> (outputs of the B rows, tag of the model that answered)
Runner = Callable[[np.ndarray], tuple[Out, Tag]]


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """`max_batch` rows per model call; `max_wait_s` seconds a batch stays open for more requests."""

    max_batch: int = 32
    max_wait_s: float = 0.005

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= 4096:
            raise SpecError("max_batch", f"must be within 1..4096, got {self.max_batch}")
        if not 0 <= self.max_wait_s <= 10:
            raise SpecError("max_wait_ms", f"must be within 0..10000 ms, got {self.max_wait_s * 1000:g}")

    @classmethod
    def off(cls) -> BatchSettings:
        """Every request runs alone, at once."""
        return cls(max_batch=1, max_wait_s=0.0)


@dataclass(slots=True)
class _Pending(Generic[Out, Tag]):
    x: np.ndarray  # (n, F)
    future: asyncio.Future[tuple[Out, Tag]]
    at: float  # when it arrived (loop time)


@dataclass(slots=True)
class BatchStats:
    """Counters shown by GET /v1/models/{name}."""

    batches: int = 0
    rows: int = 0
    largest: int = 0
    model_cpu_s: float = 0.0  # CPU time of the model calls, on whichever thread ran them

    def record(self, rows: int, cpu_s: float) -> None:
        self.batches += 1
        self.rows += rows
        self.largest = max(self.largest, rows)
        self.model_cpu_s += cpu_s


class DynamicBatcher(Generic[Out, Tag]):
    """Queue requests, run them in batches on one worker thread, hand each its own rows back.

    A request only joins a list; the batching loop is woken when a batch is full, or by a
    timer when the oldest request's wait is over, not by every request (a queue per request
    cost a future, a wake-up and a timeout task each, several times the model's own share).

    A batch quick enough for `inline(rows)` runs on the event loop instead: handing a batch to the
    thread and the GIL back and forth between it and a busy loop cost ~20 us of CPU a request,
    about the CNN's own share, while a batch under a couple of milliseconds holds the loop up
    no longer than a burst of requests does.
    """

    def __init__(
        self,
        runner: Runner[Out, Tag],
        settings: BatchSettings,
        name: str = "model",
        inline: Callable[[int], bool] | None = None,
    ) -> None:
        self._runner = runner
        self._inline = inline  # (rows) -> True: run a batch of that many rows on the event loop itself
        self.settings = settings
        self.stats = BatchStats()
        self._pending: deque[_Pending[Out, Tag]] = deque()
        self._rows = 0  # rows pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # what the loop sleeps on, when it sleeps
        self._wake_rows = 1  # pending rows that end the sleep: 1 when idle, max_batch while a batch fills

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop taking batches; requests still queued fail instead of hanging."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        left, self._rows = list(self._pending), 0
        self._pending.clear()
        _fail(left, AifactoryError("server is shutting down"))
        self._pool.shutdown(wait=True)

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def submit(self, x: np.ndarray) -> tuple[Out, Tag]:
        """Run rows x (n, F) as part of some batch; returns (outputs (n, K), tag)."""
        if self._task is None:
            raise AifactoryError("batcher is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Out, Tag]] = loop.create_future()
        self._pending.append(_Pending(x, future, loop.time()))
        self._rows += len(x)
        wake = self._wake
        if wake is not None and self._rows >= self._wake_rows and not wake.done():
            wake.set_result(None)
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        max_batch, max_wait = self.settings.max_batch, self.settings.max_wait_s
        while True:
            if not self._pending:
                await self._sleep(loop, 1, None)
            deadline = self._pending[0].at + max_wait
            while self._rows < max_batch and loop.time() < deadline:
                await self._sleep(loop, max_batch, deadline)
            await self._run(loop, self._take())

    async def _sleep(self, loop: asyncio.AbstractEventLoop, rows: int, deadline: float | None) -> None:
        """Until `rows` rows are pending, or `deadline` (loop time) has come."""
        self._wake, self._wake_rows = loop.create_future(), rows
        timer = None if deadline is None else loop.call_at(deadline, _wake_up, self._wake)
        try:
            await self._wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    def _take(self) -> list[_Pending[Out, Tag]]:
        """The oldest requests, up to max_batch rows (at least one request, however large)."""
        batch = [self._pending.popleft()]
        rows = len(batch[0].x)
        while self._pending and rows + len(self._pending[0].x) <= self.settings.max_batch:
            item = self._pending.popleft()
            batch.append(item)
            rows += len(item.x)
        self._rows -= rows
        return batch

    def _timed(self, x: np.ndarray) -> tuple[tuple[Out, Tag], float]:
        """The runner's answer and the CPU seconds it took on this thread."""
        started = time.thread_time()
        answer = self._runner(x)
        return answer, time.thread_time() - started

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[Out, Tag]]) -> None:
        """One model call for the whole batch; each request gets its slice of the answer."""
        x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
        try:
            if self._inline is not None and self._inline(len(x)):
                (outputs, tag), cpu_s = self._timed(x)
            else:
                (outputs, tag), cpu_s = await loop.run_in_executor(self._pool, self._timed, x)
        except asyncio.CancelledError:
            _fail(batch, AifactoryError("server is shutting down"))
            raise
        except Exception as exc:  # the model's failure belongs to every request of the batch
            _fail(batch, exc)
            return
        self.stats.record(len(x), cpu_s)
        start = 0
        for pending in batch:
            stop = start + len(pending.x)
            if not pending.future.done():  # the client may have gone away meanwhile
                pending.future.set_result((outputs[start:stop], tag))
            start = stop


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(batch: list[_Pending[Out, Tag]], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
