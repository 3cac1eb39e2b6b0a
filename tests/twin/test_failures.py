"""What-if: node failures at a published rate, repairs, and the work lost back to the last checkpoint."""

from __future__ import annotations

import pytest

from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.events import NodeState
from aifactory.core.project import Project
from aifactory.twin.executor import ExecutorSettings
from aifactory.twin.failures import LLAMA3_PER_GPU_DAY, parse_rate, with_failures
from aifactory.twin.traces.format import Scenario
from aifactory.twin.whatif import Variant, run_variants

from .helpers import job


def test_failures_are_seeded_node_events_at_the_rate() -> None:
    day = 86400.0
    jobs = [job(0, 8, 3600.0), job(100 * day, 8, 3600.0)]
    nodes = [NodeSpec(f"n{i}", 8) for i in range(50)]
    scenario = Scenario("s", jobs, nodes, [Project("a", 400)])
    failed = with_failures(scenario, 1e-3, 3600.0)
    downs = [t for t, e in failed.node_events if isinstance(e, NodeState) and not e.up]
    expected = 1e-3 * 8 * 50 * 100  # per GPU-day x GPUs x days
    assert 0.6 * expected < len(downs) < 1.4 * expected
    ups = {e.node: t for t, e in failed.node_events if isinstance(e, NodeState) and e.up}
    assert all(0 <= t < 100 * day for t in downs) and len(ups) > 0
    assert with_failures(scenario, 1e-3, 3600.0).node_events == failed.node_events  # seeded
    assert parse_rate("llama3") == pytest.approx(4.736e-4, rel=1e-3) == LLAMA3_PER_GPU_DAY
    for bad in ("often", "0", "2"):
        with pytest.raises(SpecError):
            parse_rate(bad)


def test_a_failure_costs_the_work_since_the_last_checkpoint() -> None:
    day = 86400.0
    jobs = [job(0, 8, 10 * day), job(30 * day, 1, 60.0)]  # a long gang job; a late one keeps failures coming
    scenario = Scenario("s", jobs, [NodeSpec("n0", 8), NodeSpec("n1", 8)], [Project("a", 16)])
    hourly = ExecutorSettings(checkpoint_every_s=3600.0)
    base, failing = run_variants(
        scenario,
        [Variant("fifo", executor=hourly), Variant("fifo", executor=hourly, failures_per_gpu_day=0.02, repair_s=7200)],
    )
    assert base.summary["lost_gpu_hours"] == 0 and base.summary["goodput"] == 1.0
    assert failing.summary["finished"] == 2  # the job resumed after each failure and finished
    lost = failing.summary["lost_gpu_hours"]
    assert lost > 0 and failing.summary["goodput"] == pytest.approx(1 - lost / failing.summary["gpu_hours"])
    assert failing.summary["jct_s_p99"] > base.summary["jct_s_p99"]  # restarts and repairs take time
