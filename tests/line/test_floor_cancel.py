"""Interrupting a pipeline stops the step's job on the floor (no orphan training left running)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from aifactory.core.states import JobState
from aifactory.line import db
from aifactory.line.executors import FloorExecutor
from aifactory.line.pipeline import parse_pipeline
from aifactory.line.runner import PipelineRunner, StepEvent


async def _interrupt_training(home: Path) -> tuple[list[str], object, list[StepEvent]]:
    from aifactory.live.service import FactoryService
    from aifactory.live.settings import LiveSettings

    service = await FactoryService.open(LiveSettings(home=home, gpus=2))
    try:
        first_epoch = asyncio.Event()
        events: list[StepEvent] = []

        def on_event(event: StepEvent) -> None:
            events.append(event)
            if event.kind == "metrics":
                first_epoch.set()

        pipeline = parse_pipeline(
            {
                "name": "long",
                "steps": [
                    {"name": "ingest", "params": {"dataset": "digits", "source": "sklearn:digits"}},
                    {"name": "train", "needs": ["ingest"], "params": {"epochs": 100000}},
                ],
            }
        )
        run = asyncio.ensure_future(PipelineRunner(FloorExecutor(service), home, on_event).run(pipeline))
        await asyncio.wait_for(first_epoch.wait(), timeout=120)
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        jobs = service.jobs()
        train = next(j for j in jobs if j.spec.name == "line:train")
        final = await service.wait(train.id, timeout=60)
        return [j.spec.name or "" for j in jobs], final, events
    finally:
        await service.close()


def test_cancelling_a_run_cancels_the_running_step_job(home: Path) -> None:
    names, train, events = asyncio.run(_interrupt_training(home))
    submitted = [e.data["job"] for e in events if e.step == "train" and e.kind == "submitted"]
    assert submitted == [train.id]  # type: ignore[attr-defined]  # known while it ran, for the live view
    assert sorted(names) == ["line:ingest", "line:train"]
    assert train.state is JobState.CANCELLED  # type: ignore[attr-defined]
    with db.open_engine(home).begin() as conn:
        assert conn.execute(sa.select(db.runs.c.status)).scalars().all() == ["cancelled"]
