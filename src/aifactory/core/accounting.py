"""Per-project accounting: what each project holds, owes and waits for (the `projects` view)."""

from __future__ import annotations

from aifactory.core.project import Account
from aifactory.core.view import FloorState


def accounts(factory: FloorState, now: float) -> list[Account]:
    """Quota, in use, borrowed, lent and pending per project, sorted by name.

    `lent` splits the GPUs borrowed in a pool over the idle guarantees of that pool's
    projects, in proportion to each one's idle guarantee.
    """
    idle: dict[str, float] = {}
    borrowed_in: dict[str | None, float] = {}
    idle_in: dict[str | None, float] = {}
    for p in factory.projects.values():
        used = factory.usage.get(p.name, 0.0)
        key = factory.pool_of(p.name)
        idle[p.name] = max(0.0, p.quota - used)
        idle_in[key] = idle_in.get(key, 0.0) + idle[p.name]
        borrowed_in[key] = borrowed_in.get(key, 0.0) + max(0.0, used - p.quota)
    out = []
    for p in sorted(factory.projects.values(), key=lambda p: p.name):
        used = factory.usage.get(p.name, 0.0)
        key = factory.pool_of(p.name)
        share = min(1.0, borrowed_in[key] / idle_in[key]) if idle_in[key] > 0 else 0.0
        count, gpus = factory.pending.totals(p.name)
        out.append(
            Account(
                settings=p,
                running=len(factory.running_by_project.get(p.name, ())),
                in_use=used,
                borrowed=max(0.0, used - p.quota),
                lent=idle[p.name] * share,
                pending_jobs=count,
                pending_gpus=gpus,
                history_gpu_s=factory.history.gpu_seconds(p.name, used, now),
            )
        )
    return out
