"""A replay pauses the cyclic garbage collector while it runs and always puts it back."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from aifactory.twin.replay import replay

from .helpers import job, one_node, settings

TRACE = [job(0, 2, 10), job(1, 4, 5), job(2, 1, 3)]


@pytest.fixture
def collector_enabled() -> Iterator[None]:
    """Each test starts with the collector on and nothing frozen (whatever an earlier test of this
    process left), so a replay that froze would be seen; it leaves the collector on."""
    gc.unfreeze()
    gc.enable()
    yield
    gc.enable()


def test_collector_is_off_during_a_replay_and_on_after(collector_enabled: None) -> None:
    seen: list[bool] = []
    result = replay(one_node(TRACE), settings("fifo"), progress=lambda done, n: seen.append(gc.isenabled()))
    assert seen and not any(seen)
    assert gc.isenabled()
    assert result.recorder.started == [0, 10, 15]  # the pause changes no decision


def test_collector_left_off_stays_off(collector_enabled: None) -> None:
    gc.disable()
    replay(one_node(TRACE), settings("fifo"))
    assert not gc.isenabled()


def test_collector_is_back_on_when_the_replay_fails(collector_enabled: None) -> None:
    def fail(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        replay(one_node(TRACE), settings("fifo"), progress=fail)
    assert gc.isenabled()


def tracked(sentinel: object) -> bool:
    """Whether the collector's generations hold the object (a frozen object is in none of them).

    Asked of one object rather than by counting: the freeze count also falls whenever a
    frozen object is freed, which other tests' threads may do at any moment.
    """
    return any(o is sentinel for o in gc.get_objects())


def test_replay_freezes_nothing(collector_enabled: None) -> None:
    sentinel: list[object] = [object()]
    assert tracked(sentinel)
    replay(one_node(TRACE), settings("fifo"))
    assert tracked(sentinel)


def test_objects_someone_froze_stay_frozen(collector_enabled: None) -> None:
    sentinel: list[object] = [object()]
    gc.freeze()
    try:
        replay(one_node(TRACE), settings("fifo"))
        assert not tracked(sentinel)
    finally:
        gc.unfreeze()
    assert tracked(sentinel)
