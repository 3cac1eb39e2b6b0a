"""Scheduler invariants over random clusters, projects and job streams (hypothesis).

Each example drives the real Factory on a virtual clock (`sim.py`) and checks, after
every event: no GPU (or fraction) given twice, usage matches the allocation map,
preemptions only take borrowed GPUs for an owner within its guarantee (so no cycles);
at the end: every job ran to completion (no starvation once arrivals stop); and the
same inputs give the same decisions.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aifactory.core import Cluster, Factory, JobSpec, Node, Preempt, Project, SpecError, Submit
from aifactory.core.factory import FactorySettings

from .sim import simulate

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
POLICIES = ["fairshare", "fifo", "priority", "las", "srtf", "backfill"]


@st.composite
def floors(draw: st.DrawFn) -> tuple[Cluster, list[Project]]:
    sizes = draw(st.lists(st.sampled_from([1, 2, 4, 8]), min_size=1, max_size=4))
    cluster = Cluster(Node(f"n{i}", g, rack=f"r{i % 2}") for i, g in enumerate(sizes))
    total = sum(sizes)
    count = draw(st.integers(1, 4))
    cuts = draw(st.lists(st.integers(0, total), min_size=count, max_size=count))
    scale = min(1.0, total / max(1, sum(cuts)))  # guarantees never add up to more than the floor
    projects = [
        Project(f"p{i}", quota=float(int(c * scale)), weight=draw(st.sampled_from([1.0, 2.0, 3.0])))
        for i, c in enumerate(cuts)
    ]
    return cluster, projects


@st.composite
def streams(draw: st.DrawFn, cluster: Cluster, projects: list[Project]) -> tuple[list, dict[int, float]]:
    largest = max(n.gpu_count for n in cluster)
    arrivals = []
    durations = {}
    t = 0.0
    for job_id in range(1, draw(st.integers(1, 20)) + 1):
        t += draw(st.sampled_from([0.0, 1.0, 5.0, 30.0]))
        project = draw(st.sampled_from(projects))
        gpus = draw(st.sampled_from([g for g in (0.25, 0.5, 1, 2, 4, 8) if g <= largest]))
        quota_ok = gpus <= project.quota
        klass = draw(st.sampled_from(["train", "train", "interactive"])) if quota_ok else "train"
        duration = draw(st.sampled_from([5.0, 20.0, 60.0, 300.0]))
        limit = draw(st.sampled_from([None, duration * 2]))
        spec = JobSpec(
            command=("true",),
            project=project.name,
            gpus=gpus,
            priority_class=klass,
            time_limit_s=limit,
            duration_s=duration,
            priority=draw(st.integers(0, 2)),
        )
        arrivals.append((t, job_id, spec))
        durations[job_id] = duration
    return arrivals, durations


def build(cluster: Cluster, projects: list[Project], policy: str, placement: str = "pack") -> Factory:
    fresh = Cluster(Node(n.name, n.gpu_count, rack=n.rack) for n in cluster)
    copies = [Project(p.name, quota=p.quota, weight=p.weight) for p in projects]
    return Factory(fresh, copies, FactorySettings(policy=policy, placement=placement, min_runtime_s=10.0))


@SETTINGS
@given(data=st.data(), policy=st.sampled_from(POLICIES), placement=st.sampled_from(["pack", "spread", "topology"]))
def test_no_overcommit_and_every_job_finishes(data: st.DataObject, policy: str, placement: str) -> None:
    cluster, projects = data.draw(floors())
    arrivals, durations = data.draw(streams(cluster, projects))
    f = build(cluster, projects, policy, placement)
    trace = simulate(f, arrivals, durations)  # checks the allocation map after every event
    event(f"preemptions: {min(3, sum(isinstance(a, Preempt) for _, a in trace.actions))}")
    states = {j.id: j.state for j in f.jobs.values()}
    assert all(s.terminal for s in states.values()), states
    assert not f.running and f.cluster.free_gpus() == sum(n.gpu_count for n in cluster)


@SETTINGS
@given(data=st.data())
def test_preemption_only_takes_borrowed_gpus_for_an_owner_within_quota(data: st.DataObject) -> None:
    cluster, projects = data.draw(floors())
    arrivals, durations = data.draw(streams(cluster, projects))
    f = build(cluster, projects, "fairshare")
    seen: list[tuple[str, str]] = []

    def check(factory: Factory, before: dict[str, float], acts: list, now: float) -> None:
        for a in acts:
            if isinstance(a, Preempt):
                victim = factory.jobs[a.job_id].spec.project
                owner = a.reason.split("project ")[1].split(" ")[0]
                assert victim != owner
                # Checked after the pass (the event itself may free GPUs first): the victim's project
                # still holds its victims, so it was over quota; the owner's reclaimed GPUs are still
                # on their way, so it is strictly under its guarantee.
                assert factory.usage[victim] > factory.projects[victim].quota  # only borrowed GPUs
                assert factory.usage[owner] < factory.projects[owner].quota
                seen.append((owner, victim))

    simulate(f, arrivals, durations, on_actions=check)
    event(f"reclaims: {min(len(seen), 3)}")
    assert all(j.state.terminal for j in f.jobs.values())


@SETTINGS
@given(data=st.data())
def test_a_guarantee_is_always_reachable_by_reclaim(data: st.DataObject) -> None:
    cluster, projects = data.draw(floors())
    total = sum(n.gpu_count for n in cluster)
    owner = data.draw(st.sampled_from(projects))
    owner.quota = float(data.draw(st.integers(1, total)))
    spare = total - owner.quota
    for p in projects:  # the others' guarantees fit in what is left
        if p is not owner:
            p.quota = min(p.quota, spare)
            spare -= p.quota
    f = build(cluster, projects, "fairshare")
    others = [p for p in projects if p is not owner] or [Project("x")]
    if others[0].name == "x":
        f.set_project(others[0])
    arrivals = []
    durations: dict[int, float] = {}
    for i in range(total):  # others fill the floor with long 1-GPU jobs, borrowing the owner's idle share
        arrivals.append((0.0, i + 1, JobSpec(command=("x",), project=others[i % len(others)].name)))
        durations[i + 1] = 10_000.0
    for k in range(int(owner.quota)):  # then the owner asks for its whole guarantee
        arrivals.append((100.0, 1000 + k, JobSpec(command=("x",), project=owner.name)))
        durations[1000 + k] = 10_000.0
    reached: list[float] = []

    def watch(factory: Factory, before: dict[str, float], acts: list, now: float) -> None:
        if not reached and factory.usage[owner.name] >= owner.quota:
            reached.append(now)

    simulate(f, arrivals, durations, max_steps=600, on_actions=watch)
    assert reached, f"{owner.name} never got its guarantee {owner.quota}"
    assert reached[0] <= 100.0 + 1.0 + 1e-9  # the fillers are 100 s old (past min runtime): one stop


@SETTINGS
@given(data=st.data(), policy=st.sampled_from(POLICIES))
def test_same_inputs_same_decisions(data: st.DataObject, policy: str) -> None:
    cluster, projects = data.draw(floors())
    arrivals, durations = data.draw(streams(cluster, projects))
    one = simulate(build(cluster, projects, policy), arrivals, durations, check=False)
    two = simulate(build(cluster, projects, policy), arrivals, durations, check=False)
    assert one.actions == two.actions


def test_submit_rejects_a_job_no_policy_could_ever_run() -> None:
    f = build(Cluster.virtual(2, 1), [Project("p0", quota=1.0)], "fairshare")
    with pytest.raises(SpecError) as err:
        f.handle(Submit(1, JobSpec(command=("x",), project="p0", gpus=2, priority_class="interactive")), 0)
    assert err.value.field == "priority_class"
    assert f.jobs == {} and f.cluster.free_gpus() == 2


@SETTINGS
@given(data=st.data(), policy=st.sampled_from(POLICIES))
def test_no_job_starts_before_its_dependencies_end_and_every_job_settles(data: st.DataObject, policy: str) -> None:
    """Random streams where later jobs wait for earlier ones (ok, any, failed): a job starts only
    after each dependency ended; one whose dependency can never be met ends cancelled; the rest run."""
    from dataclasses import replace

    from aifactory.core.actions import StateChanged
    from aifactory.core.job import dependency_met

    cluster, projects = data.draw(floors())
    arrivals, durations = data.draw(streams(cluster, projects))
    with_deps = []
    for t, job_id, spec in arrivals:
        earlier = [j for _, j, _ in with_deps]
        picks = data.draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True)) if earlier else []
        after = tuple((d, data.draw(st.sampled_from(["ok", "any", "failed"]))) for d in picks)
        with_deps.append((t, job_id, replace(spec, after=after)))
    f = build(cluster, projects, policy)
    trace = simulate(f, with_deps, durations)
    ended: dict[int, float] = {}
    started: dict[int, float] = {}
    for at, action in trace.actions:
        if isinstance(action, StateChanged) and action.new.terminal:
            ended[action.job_id] = at
        if isinstance(action, StateChanged) and action.new.value == "running":
            started.setdefault(action.job_id, at)
    for _, job_id, spec in with_deps:
        job = f.jobs[job_id]
        assert job.state.terminal, (job_id, job.state, job.pending_reason)
        if job_id in started:
            for dep, kind in spec.after:
                assert dep in ended and ended[dep] <= started[job_id], (job_id, dep)
                assert dependency_met(kind, f.jobs[dep].state)
        else:  # never started: only because a dependency ended the wrong way (nobody cancels here)
            assert job.state.value == "cancelled" and "can never be met" in job.reason, (job_id, job.reason)
            assert any(not dependency_met(k, f.jobs[d].state) for d, k in spec.after)


@SETTINGS
@given(data=st.data(), policy=st.sampled_from(POLICIES))
def test_an_arrays_cap_is_never_exceeded_and_every_element_runs(data: st.DataObject, policy: str) -> None:
    from dataclasses import replace

    from aifactory.core.actions import StateChanged
    from aifactory.core.states import JobState

    cluster, projects = data.draw(floors())
    arrivals, durations = data.draw(streams(cluster, projects))
    cap = data.draw(st.integers(1, 3))
    first = arrivals[0][1]
    # Every job of the stream becomes an element of one array (submitted at their own times).
    elements = [
        (t, j, replace(s, array_id=first, array_index=k, array_cap=cap)) for k, (t, j, s) in enumerate(arrivals)
    ]
    f = build(cluster, projects, policy)
    trace = simulate(f, elements, durations)
    holding = {JobState.RUNNING, JobState.PREEMPTED}
    now_running: set[int] = set()
    for _, action in trace.actions:
        if isinstance(action, StateChanged):
            if action.new in holding:
                now_running.add(action.job_id)
            else:
                now_running.discard(action.job_id)
            assert len(now_running) <= cap, (now_running, cap)
    assert all(f.jobs[j].state.terminal for _, j, _ in elements)
