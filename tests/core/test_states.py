"""The job state machine: every edge walks, every other edge is refused."""

from __future__ import annotations

import itertools

import pytest

from aifactory.core.errors import InvalidTransition
from aifactory.core.states import TERMINAL, TRANSITIONS, JobState, check_transition

EDGES = {
    (JobState.QUEUED, JobState.RUNNING),
    (JobState.QUEUED, JobState.CANCELLED),
    (JobState.QUEUED, JobState.FAILED),
    (JobState.RUNNING, JobState.SUCCEEDED),
    (JobState.RUNNING, JobState.FAILED),
    (JobState.RUNNING, JobState.CANCELLED),
    (JobState.RUNNING, JobState.PREEMPTED),
    (JobState.RUNNING, JobState.QUEUED),  # its process never started
    (JobState.PREEMPTED, JobState.QUEUED),
    (JobState.PREEMPTED, JobState.CANCELLED),
    (JobState.PREEMPTED, JobState.FAILED),
}


def test_table_is_exactly_the_documented_edges() -> None:
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == EDGES


@pytest.mark.parametrize(("old", "new"), sorted(EDGES))
def test_every_edge_is_allowed(old: JobState, new: JobState) -> None:
    check_transition(1, old, new)


@pytest.mark.parametrize(("old", "new"), [e for e in itertools.product(JobState, JobState) if e not in EDGES])
def test_every_other_edge_is_refused(old: JobState, new: JobState) -> None:
    with pytest.raises(InvalidTransition, match=f"from {old.value} to {new.value}"):
        check_transition(7, old, new)


def test_terminal_states_have_no_way_out() -> None:
    assert {s for s in JobState if s.terminal} == TERMINAL
    assert all(not TRANSITIONS[s] for s in TERMINAL)
