"""Power budgets as the core reads them: `POOL=KW` items parsed into (pool, watts).

The rule itself lives in the scheduler view (`policies.base.SchedulerView.try_place`): a job whose
start would push the estimated IT draw past the factory's or its pool's budget waits.
"""

from __future__ import annotations

from aifactory.core.errors import SpecError


def parse_pool_budgets(items: tuple[str, ...] | list[str]) -> tuple[tuple[str, float], ...]:
    """`POOL=KW` items as (pool, watts); SpecError naming a malformed one."""
    out = []
    for item in items:
        pool, sep, kw = item.partition("=")
        try:
            value = float(kw)
        except ValueError:
            value = -1.0
        if not sep or not pool.strip() or not 0 < value < 1e7:
            raise SpecError("pool_power_budget", f"{item!r}: expected POOL=KW with KW more than 0")
        out.append((pool.strip(), value * 1000))
    return tuple(out)


def check_pools(budgets: tuple[tuple[str, float], ...], pools: set[str]) -> None:
    """SpecError naming a budget's pool that no node has: a misspelt pool would limit nothing."""
    for pool, _ in budgets:
        if pool not in pools:
            raise SpecError("pool_power_budget", f"no node pool {pool!r} (have: {', '.join(sorted(pools))})")
