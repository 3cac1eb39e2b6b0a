"""Invariants of any replay, on random small traces (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.core.cluster import NodeSpec
from aifactory.core.project import Project
from aifactory.core.states import JobState
from aifactory.twin.replay import replay
from aifactory.twin.traces.format import Scenario, TraceJob, trace_job

from .helpers import settings as twin_settings

jobs_st = st.lists(
    st.builds(
        trace_job,
        submit_time=st.integers(0, 50).map(float),
        project=st.sampled_from(["a", "b"]),
        gpus=st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0]),
        duration_s=st.integers(1, 200).map(float),
    ),
    min_size=1,
    max_size=25,
).map(lambda js: sorted(js, key=lambda j: j.submit_time))


@settings(max_examples=40, deadline=None)
@given(jobs=jobs_st, policy=st.sampled_from(["fifo", "priority", "fairshare"]), pools=st.booleans())
def test_every_job_ends_once_after_its_work_and_gpus_are_never_overcommitted(
    jobs: list[TraceJob], policy: str, pools: bool
) -> None:
    nodes = [NodeSpec("p0", 4, pool="p"), NodeSpec("q0", 4, pool="q")]
    projects = [Project("a", quota=4, pool="p"), Project("b", quota=4, pool="q")]
    r = replay(Scenario("prop", jobs, nodes, projects), twin_settings(policy, use_pools=pools, preempt_grace_s=5))
    rec = r.recorder
    assert not r.rejected
    for i, job in enumerate(jobs):
        assert rec.final[i] is JobState.SUCCEEDED
        assert job.submit_time <= rec.started[i] <= rec.ended[i]
        # A job ends no sooner than its work allows; without preemption exactly then.
        assert rec.ended[i] - rec.started[i] >= job.spec.duration_s - 1e-9
        if r.summary["preemptions"] == 0:
            assert rec.ended[i] - rec.started[i] == job.spec.duration_s
    assert max(r.samples.allocated, default=0) <= 8
    assert sorted(rec.start_order) == list(range(len(jobs)))
    used = sum(j.spec.gpus * j.spec.duration_s for j in jobs)
    assert r.summary["gpu_hours"] * 3600 >= used - 1e-6
