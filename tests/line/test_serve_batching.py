"""The dynamic batcher, driven directly on an event loop with a real (numpy) runner."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from aifactory.core.errors import SpecError
from aifactory.serve.batching import BatchSettings, DynamicBatcher


class Recorder:
    """A runner that answers row i with a one-hot of (sum of its pixels) % 10 and records batch sizes."""

    def __init__(self, delay_s: float = 0.0, fail_on: float | None = None) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.fail_on = fail_on

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, str]:
        self.sizes.append(len(x))
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and (x == self.fail_on).any():
            raise RuntimeError("model blew up")
        time.sleep(self.delay_s)
        probs = np.zeros((len(x), 10), dtype=np.float32)
        probs[np.arange(len(x)), x.sum(axis=1).astype(int) % 10] = 1.0
        return probs, "v1"


def rows(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 64), value, dtype=np.float32)


async def submit_all(batcher: DynamicBatcher[np.ndarray, str], xs: list[np.ndarray]) -> list[tuple[np.ndarray, str]]:
    return await asyncio.gather(*(batcher.submit(x) for x in xs))


def run(coro_fn, runner: Recorder, settings: BatchSettings):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        batcher = DynamicBatcher(runner, settings)
        batcher.start()
        try:
            return await coro_fn(batcher)
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    runner = Recorder()
    xs = [rows(float(i), n=1 + i % 3) for i in range(20)]  # 39 rows in all
    answers = run(lambda b: submit_all(b, xs), runner, BatchSettings(max_batch=8, max_wait_s=0.2))
    for x, (probs, tag) in zip(xs, answers, strict=True):
        assert tag == "v1"
        assert probs.shape == (len(x), 10)
        assert (probs.argmax(axis=1) == int(x[0].sum()) % 10).all()
    assert sum(runner.sizes) == 39
    assert max(runner.sizes) <= 8
    assert len(runner.sizes) <= 7  # full batches, not one call per request
    assert runner.threads and all(name.startswith("batch-") for name in runner.threads)  # off the event loop


def test_full_batch_runs_without_waiting_out_max_wait() -> None:
    runner = Recorder()
    started = time.monotonic()
    run(lambda b: submit_all(b, [rows(1.0)] * 4), runner, BatchSettings(max_batch=4, max_wait_s=5.0))
    assert runner.sizes == [4]
    assert time.monotonic() - started < 4.0


def test_lone_request_waits_for_max_wait_then_runs() -> None:
    runner = Recorder()

    async def one(batcher: DynamicBatcher[np.ndarray, str]) -> float:
        t0 = time.monotonic()
        await batcher.submit(rows(2.0))
        return time.monotonic() - t0

    elapsed = run(one, runner, BatchSettings(max_batch=32, max_wait_s=0.15))
    assert runner.sizes == [1]
    assert elapsed >= 0.14


def test_requests_arriving_while_a_batch_computes_form_the_next_batch() -> None:
    runner = Recorder(delay_s=0.2)

    async def waves(batcher: DynamicBatcher[np.ndarray, str]) -> None:
        first = asyncio.ensure_future(batcher.submit(rows(1.0)))
        await asyncio.sleep(0.05)  # the first batch is now computing on the worker
        await asyncio.gather(first, *(batcher.submit(rows(2.0)) for _ in range(6)))

    run(waves, runner, BatchSettings(max_batch=16, max_wait_s=0.0))
    assert runner.sizes == [1, 6]


def test_batching_off_runs_every_request_alone() -> None:
    runner = Recorder()
    run(lambda b: submit_all(b, [rows(float(i)) for i in range(6)]), runner, BatchSettings.off())
    assert runner.sizes == [1] * 6


def test_a_request_larger_than_max_batch_runs_alone_and_whole() -> None:
    runner = Recorder()
    answers = run(lambda b: submit_all(b, [rows(1.0, 2), rows(3.0, 10), rows(5.0, 2)]), runner, BatchSettings(4, 0.1))
    assert [len(p) for p, _ in answers] == [2, 10, 2]
    assert 10 in runner.sizes and sum(runner.sizes) == 14


def test_model_failure_fails_its_batch_only() -> None:
    runner = Recorder(fail_on=7.0)

    async def mixed(batcher: DynamicBatcher[np.ndarray, str]) -> tuple[list[object], tuple[np.ndarray, str]]:
        bad = await asyncio.gather(batcher.submit(rows(7.0)), batcher.submit(rows(1.0)), return_exceptions=True)
        good = await batcher.submit(rows(1.0))
        return bad, good

    bad, good = run(mixed, runner, BatchSettings(max_batch=2, max_wait_s=0.5))
    assert all(isinstance(e, RuntimeError) for e in bad)
    assert good[1] == "v1"


def test_a_quick_model_runs_on_the_event_loop_and_a_slow_one_on_the_worker() -> None:
    quick = True

    async def both(batcher: DynamicBatcher[np.ndarray, str]) -> tuple[str, list[tuple[np.ndarray, str]]]:
        nonlocal quick
        first = await submit_all(batcher, [rows(1.0), rows(2.0)])
        quick = False
        second = await submit_all(batcher, [rows(3.0), rows(4.0)])
        return threading.current_thread().name, first + second

    runner = Recorder()

    async def main() -> tuple[str, list[tuple[np.ndarray, str]]]:
        batcher = DynamicBatcher(runner, BatchSettings(max_batch=2, max_wait_s=0.5), inline=lambda _rows: quick)
        batcher.start()
        try:
            return await both(batcher)
        finally:
            await batcher.close()

    loop_thread, answers = asyncio.run(main())
    assert runner.sizes == [2, 2]
    assert runner.threads == {loop_thread, "batch-model_0"}  # one batch each way
    assert [int(p.argmax()) for p, _ in answers] == [(v * 64) % 10 for v in (1, 2, 3, 4)]


def test_a_request_too_large_to_run_quickly_goes_to_the_worker_thread() -> None:
    runner = Recorder()

    async def main() -> str:
        batcher = DynamicBatcher(runner, BatchSettings(max_batch=2, max_wait_s=0.0), inline=lambda rows: rows <= 2)
        batcher.start()
        try:
            await submit_all(batcher, [rows(1.0, 2)])
            await submit_all(batcher, [rows(2.0, 50)])  # larger than max_batch: runs alone, whole
            return threading.current_thread().name
        finally:
            await batcher.close()

    loop_thread = asyncio.run(main())
    assert runner.sizes == [2, 50]
    assert runner.threads == {loop_thread, "batch-model_0"}


def test_settings_are_checked() -> None:
    with pytest.raises(SpecError, match="max_batch"):
        BatchSettings(max_batch=0)
    with pytest.raises(SpecError, match="max_wait_ms"):
        BatchSettings(max_wait_s=-1)
