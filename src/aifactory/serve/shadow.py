"""Shadow mode: a copy of live traffic goes to the challenger; its answers are logged, never returned.

The live response is sent before the shadow copy is even queued, and the challenger has its
own batcher and worker thread, so it adds no latency to the response path beyond sharing the
CPU. When the challenger falls behind by more than `max_pending` requests, copies are dropped
(and counted) rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from aifactory.serve.batching import BatchSettings, DynamicBatcher
from aifactory.serve.feedback import SHADOW, Answer, LogWriter
from aifactory.serve.swap import AliasWatcher, ModelSlot, ModelSource, Served

log = logging.getLogger("aifactory.serve")


class Shadow:
    """The challenger: its slot (hot-swapped like the champion's), batcher and log of answers."""

    def __init__(
        self, source: ModelSource, ref: str, writer: LogWriter, settings: BatchSettings, poll_s: float = 0.5
    ) -> None:
        self.ref = ref
        self.slot = ModelSlot()
        self.watcher = AliasWatcher(source, ref, self.slot, poll_s, settings.max_batch)
        self.batcher: DynamicBatcher[np.ndarray, Served] = DynamicBatcher(self.slot.run, settings, name="shadow")
        self.writer = writer
        self.max_pending = 1024
        self.answered = 0
        self.dropped = 0  # copies not sent: no challenger yet, or it fell behind
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def load(self) -> None:
        """First load; a challenger that does not exist yet is not an error (the watcher picks it up later)."""
        self.watcher.check()

    def start(self) -> None:
        self.batcher.start()
        self.watcher.start()

    async def close(self) -> None:
        await self.watcher.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.batcher.close()

    @property
    def version(self) -> int | None:
        served = self.slot.current
        return served.version if served else None

    def offer(self, request_id: str, x: np.ndarray) -> None:
        """Send a copy of request rows x (n, F) to the challenger, without waiting for it."""
        current = self.slot.current
        if current is None or len(self._tasks) >= self.max_pending or current.signature.width != x.shape[1]:
            self.dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._answer(request_id, x))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request_id: str, x: np.ndarray) -> None:
        try:
            probs, served = await self.batcher.submit(x)
        except Exception as exc:  # the challenger failing must never touch live traffic
            self.failed += 1
            log.warning("shadow %s failed on %s: %s", self.ref, request_id, exc)
            return
        self.answered += 1
        self.writer.put(
            Answer(
                request_id,
                SHADOW,
                served.model,
                served.version,
                x,
                probs,
                time.time(),
                served.classes,
                served.classes is None,
            )
        )
