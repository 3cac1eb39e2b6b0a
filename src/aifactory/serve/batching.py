"""Dynamic batching: requests queue up and run as one model call.

A batch closes when it holds `max_batch` rows or `max_wait_s` has passed since its first
request arrived, whichever comes first. The model runs on one worker thread, off the event
loop, so the server keeps accepting while a batch computes; requests arriving meanwhile form
the next batch. With `max_batch=1` and no wait every request runs alone (batching off).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from aifactory.core.errors import AifactoryError, SpecError

Tag = TypeVar("Tag")
# runner(x: (B, 64) float32) -> (probabilities (B, 10), tag of the model that answered)
Runner = Callable[[np.ndarray], tuple[np.ndarray, Tag]]


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
class _Pending(Generic[Tag]):
    x: np.ndarray  # (n, 64)
    future: asyncio.Future[tuple[np.ndarray, Tag]]


@dataclass(slots=True)
class BatchStats:
    """Counters shown by GET /v1/models/{name}."""

    batches: int = 0
    rows: int = 0
    largest: int = 0

    def record(self, rows: int) -> None:
        self.batches += 1
        self.rows += rows
        self.largest = max(self.largest, rows)


class DynamicBatcher(Generic[Tag]):
    """Queue requests, run them in batches on one worker thread, hand each its own rows back."""

    def __init__(self, runner: Runner[Tag], settings: BatchSettings, name: str = "model") -> None:
        self._runner = runner
        self.settings = settings
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending[Tag]] = asyncio.Queue()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self._task: asyncio.Task[None] | None = None
        self._carry: _Pending[Tag] | None = None  # taken from the queue but did not fit the last batch

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
        left = [self._carry] if self._carry else []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        _fail(left, AifactoryError("server is shutting down"))
        self._pool.shutdown(wait=True)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def submit(self, x: np.ndarray) -> tuple[np.ndarray, Tag]:
        """Run rows x (n, 64) as part of some batch; returns (probabilities (n, 10), tag)."""
        if self._task is None:
            raise AifactoryError("batcher is not started")
        future: asyncio.Future[tuple[np.ndarray, Tag]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(x, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(loop)
            await self._run(loop, batch)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[_Pending[Tag]]:
        """Wait for a first request, then gather more until the batch is full or its wait is over."""
        first, self._carry = self._carry or await self._queue.get(), None
        batch, rows = [first], len(first.x)
        deadline = loop.time() + self.settings.max_wait_s
        while rows < self.settings.max_batch:
            if not self._queue.empty():
                item = self._queue.get_nowait()
            else:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if rows + len(item.x) > self.settings.max_batch:
                self._carry = item
                break
            batch.append(item)
            rows += len(item.x)
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[Tag]]) -> None:
        """One model call for the whole batch; each request gets its slice of the answer."""
        x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
        try:
            probs, tag = await loop.run_in_executor(self._pool, self._runner, x)
        except asyncio.CancelledError:
            _fail(batch, AifactoryError("server is shutting down"))
            raise
        except Exception as exc:  # the model's failure belongs to every request of the batch
            _fail(batch, exc)
            return
        self.stats.record(len(x))
        start = 0
        for pending in batch:
            stop = start + len(pending.x)
            if not pending.future.done():  # the client may have gone away meanwhile
                pending.future.set_result((probs[start:stop], tag))
            start = stop


def _fail(batch: list[_Pending[Tag]], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
