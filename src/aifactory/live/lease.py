"""One active server per store: the leader lease.

Two servers on one store would both launch the same queued jobs. So before it opens the factory a
server takes the store's lease (`Store.take_lease`, one conditional UPDATE: atomic on SQLite and
PostgreSQL); a second server waits as a standby, polling, and takes over once the leader's lease
has expired (its jobs are re-attached by the restart path), or exits at once with `--no-wait`. The
leader renews every third of the lease; a leader that finds it has lost the lease (it stalled
for longer than two thirds of it, and a standby took over) stops at once.

The lease compares the servers' own clocks: keep them in sync (NTP) to well within the lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from aifactory.core.errors import AifactoryError
from aifactory.live.store import Store

log = logging.getLogger(__name__)
LEASE = "floor"


class NotLeader(AifactoryError):
    """Another server leads this store (and we were told not to wait)."""


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leadership:
    def __init__(self, store: Store, ttl_s: float, holder: str | None = None) -> None:
        if not ttl_s > 0:
            raise AifactoryError(f"lease_ttl: must be positive, got {ttl_s}")
        self.store, self.ttl_s = store, ttl_s
        self.holder = holder or holder_id()
        self.term: int | None = None

    def try_take(self) -> bool:
        self.term = self.store.take_lease(LEASE, self.holder, self.ttl_s, replacing=self._dead_holder())
        return self.term is not None

    def _dead_holder(self) -> str | None:
        """The holder of the lease if it is a server of this host whose process is gone (it crashed:
        a restart need not wait for its lease to run out)."""
        held = self.store.lease(LEASE)
        if held is None or held[0] == self.holder:
            return None
        host, _, rest = held[0].partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit():
            return None
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return held[0]
        except PermissionError:
            pass
        return None

    def describe_leader(self) -> str:
        held = self.store.lease(LEASE)
        if held is None:
            return "nobody"
        holder, expires_at, term = held
        return f"{holder} (term {term}, lease until {time.strftime('%H:%M:%S', time.localtime(expires_at))})"

    async def take(self, wait: bool, poll_s: float = 0.5, said: Callable[[str], None] = print) -> None:
        """Become the leader: now, or (standby) once the leader's lease expires; NotLeader if `wait`
        is False and another server leads."""
        if self.try_take():
            return
        if not wait:
            raise NotLeader(f"store: another server leads it: {self.describe_leader()}; --no-wait was given")
        said(f"aifactory: standby: {self.describe_leader()} leads this store; taking over when its lease ends")
        while not await asyncio.to_thread(self.try_take):
            await asyncio.sleep(poll_s)
        said(f"aifactory: now the leader (term {self.term})")

    async def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew every third of the lease until cancelled; `on_lost` once another server has it."""
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                kept = await asyncio.to_thread(self.try_take)
            except Exception:  # the database is away for a moment: try again, the lease still runs
                log.exception("renewing the leader lease failed")
                continue
            if not kept:
                log.error("lost the leader lease to %s: stopping", self.describe_leader())
                on_lost()
                return

    def release(self) -> None:
        self.store.release_lease(LEASE, self.holder)
