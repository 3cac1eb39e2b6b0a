"""What-if: idle nodes powered off, booted again when queued work needs them.

A node that has held nothing for `idle_after_s` is powered off: the core hears it as down
(`NodeState(up=False)`), so nothing is placed there, and it draws nothing. When a job arrives and
the queued work of a pool needs more GPUs than its powered nodes have free (and those booting
will bring), enough of its nodes that are off are booted: they draw power from the start of the
boot and take work `boot_s` later (`NodeState(up=True)`). With the packing placement (the
default), work fills busy nodes first and leaves whole nodes empty to power off.

The manager acts only through the core's own events, so what a replay decides stays the core's.
"""

from __future__ import annotations

from collections.abc import Callable

from aifactory.core.cluster import Cluster
from aifactory.core.events import Event, NodeState
from aifactory.core.factory import Factory
from aifactory.core.job import MILLI, Placement
from aifactory.twin.kernel import NODE, Kernel
from aifactory.twin.power import PowerMeter


class PowerManager:
    def __init__(
        self,
        kernel: Kernel,
        handle: Callable[[Event], None],
        cluster: Cluster,
        factory: Factory,
        meter: PowerMeter | None,
        idle_after_s: float,
        boot_s: float,
    ) -> None:
        self.kernel, self.handle, self.cluster, self.factory, self.meter = kernel, handle, cluster, factory, meter
        self.idle_after_s = idle_after_s
        self.boot_s = boot_s
        self.off: set[str] = set()
        self.booting: dict[str, float] = {}  # node -> when it takes work
        self.empty_since: dict[str, float] = {}
        self.power_offs = 0
        self.boots = 0

    def start(self) -> None:
        """Every node present and empty at the start counts as idle from now."""
        now = self.kernel.now
        for name, node in self.cluster.nodes.items():
            if node.up and node.holds_nothing:
                self._watch(name, now)

    def _watch(self, name: str, now: float) -> None:
        self.empty_since[name] = now
        self.kernel.schedule(now + self.idle_after_s, NODE, self._check, name)

    def released(self, placement: Placement) -> None:
        """A job gave its GPUs back: its nodes may now be empty."""
        now = self.kernel.now
        nodes = self.cluster.nodes
        for name, _ in placement.parts:
            node = nodes.get(name)
            if node is not None and node.up and node.holds_nothing:
                self._watch(name, now)

    def _check(self, name: str) -> None:
        node = self.cluster.nodes.get(name)
        now = self.kernel.now
        since = self.empty_since.get(name)
        if node is None or since is None or name in self.off or name in self.booting or not node.up:
            return
        if not node.holds_nothing or now - since < self.idle_after_s - 1e-9:
            return  # it took work meanwhile (a later release watches it again)
        del self.empty_since[name]
        self.off.add(name)
        self.power_offs += 1
        self.handle(NodeState(name, up=False))
        if self.meter is not None:
            self.meter.powered(now, -node.gpu_count)

    def demand(self) -> None:
        """After an arrival: boot nodes where queued work needs more GPUs than are free or coming."""
        if not self.off:
            return
        f = self.factory
        for pool, queue in f.queues.items():
            need = sum(job.spec.gpus for job in queue.values() if not job.held)
            if need <= 0:
                continue
            nodes = [n for n in self.cluster.nodes.values() if pool is None or n.pool == pool]
            free = sum(n.free_milli for n in nodes if n.up) / MILLI
            free += sum(n.gpu_count for n in nodes if n.name in self.booting)
            for node in sorted((n for n in nodes if n.name in self.off), key=lambda n: n.name):
                if free >= need:
                    break
                self._boot(node.name, node.gpu_count)
                free += node.gpu_count

    def _boot(self, name: str, gpus: int) -> None:
        now = self.kernel.now
        self.off.discard(name)
        self.booting[name] = now + self.boot_s
        self.boots += 1
        if self.meter is not None:
            self.meter.powered(now, gpus)  # a booting server draws power already
        self.kernel.schedule(now + self.boot_s, NODE, self._booted, name)

    def _booted(self, name: str) -> None:
        self.booting.pop(name, None)
        self.handle(NodeState(name, up=True))
        node = self.cluster.nodes.get(name)
        if node is not None and node.holds_nothing:
            self._watch(name, self.kernel.now)
