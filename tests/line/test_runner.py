"""The pipeline runner with real step processes (LocalExecutor: no factory needed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from aifactory.line import db
from aifactory.line.datasets import Datasets
from aifactory.line.executors import LocalExecutor
from aifactory.line.kinds import code_hash, get_step_kind
from aifactory.line.pipeline import parse_pipeline
from aifactory.line.registry import Registry
from aifactory.line.runner import PipelineRunner, StepEvent, StepFailed, cache_key


def small_pipeline(epochs: int = 3, **train: object) -> dict[str, object]:
    return {
        "name": "digits",
        "model": "digits",
        "steps": [
            {"name": "ingest", "params": {"dataset": "digits", "source": "sklearn:digits", "holdout_fraction": 0.2}},
            {
                "name": "train",
                "needs": ["ingest"],
                "params": {"epochs": epochs, "config": {"widths": [8, 16], "hidden": 32}, **train},
            },
            {"name": "evaluate", "needs": ["train"]},
            {"name": "register", "needs": ["evaluate"]},
            {"name": "deploy", "needs": ["register"], "params": {"margin": 0.01}},
        ],
    }


@pytest.mark.slow
def test_pipeline_runs_every_step_records_lineage_and_reuses_cached_steps(home: Path) -> None:
    events: list[StepEvent] = []
    runner = PipelineRunner(LocalExecutor(), home, on_event=events.append)
    first = asyncio.run(runner.run(parse_pipeline(small_pipeline())))
    assert first.cached == []
    assert first.outputs["ingest"]["dataset"] == "digits@1"
    assert first.outputs["register"]["version"] == 1
    assert first.outputs["deploy"]["promoted"] is True
    epochs = [e.data["epoch"] for e in events if e.step == "train" and e.kind == "metrics"]
    assert epochs == [1, 2, 3]  # per-epoch metrics reached the runner while the job ran

    reg = Registry(home)
    v1 = reg.resolve("digits@champion")
    assert v1.version == 1 and reg.aliases("digits") == {"champion": 1, "challenger": 1}
    assert 0.8 < v1.metrics["holdout_accuracy"] <= 1.0
    assert v1.lineage["dataset"] == "digits@1" and len(v1.lineage["dataset_sha256"]) == 64
    assert v1.lineage["environment"]["torch"]
    assert set(v1.lineage["steps"]) == {"ingest", "train", "evaluate"}
    assert v1.lineage["steps"]["train"]["params"]["epochs"] == 3
    assert v1.lineage["settings"] == {"home": str(home.absolute()), "executor": "LocalExecutor", "use_cache": True}
    [decision] = reg.decisions("digits")
    assert decision.promoted and decision.holdout == "digits-holdout@1"

    second = asyncio.run(runner.run(parse_pipeline(small_pipeline())))
    assert second.cached == ["train", "evaluate"]
    assert second.outputs["register"] == {"model": "digits", "version": 1, "new_version": False}
    assert second.outputs["deploy"]["promoted"] is False
    with db.open_engine(home).begin() as conn:
        rows = conn.execute(sa.select(db.runs.c.status, db.runs.c.lineage)).all()
    assert [r.status for r in rows] == ["succeeded", "succeeded"]
    assert json.loads(rows[1].lineage)["steps"]["train"]["cached"] is True


def test_cache_key_changes_with_params_inputs_and_code() -> None:
    base = cache_key("train", {"epochs": 3}, {"dataset": "digits@1"}, "abc")
    assert base == cache_key("train", {"epochs": 3}, {"dataset": "digits@1"}, "abc")
    assert base != cache_key("train", {"epochs": 4}, {"dataset": "digits@1"}, "abc")
    assert base != cache_key("train", {"epochs": 3}, {"dataset": "digits@2"}, "abc")
    assert base != cache_key("train", {"epochs": 3}, {"dataset": "digits@1"}, "abd")
    assert code_hash(get_step_kind("train")) == code_hash(get_step_kind("train"))
    assert code_hash(get_step_kind("train")) != code_hash(get_step_kind("evaluate"))


def test_a_failing_step_stops_the_run_with_its_log(home: Path, tmp_path: Path) -> None:
    runner = PipelineRunner(LocalExecutor(), home)
    spec = small_pipeline()
    spec["steps"][0]["params"]["source"] = str(tmp_path / "missing.csv")  # type: ignore[index]
    with pytest.raises(StepFailed) as err:
        asyncio.run(runner.run(parse_pipeline(spec)))
    assert err.value.step == "ingest" and err.value.outcome.exit_code == 2
    assert "error: path: no such file" in str(err.value)
    with db.open_engine(home).begin() as conn:
        assert conn.execute(sa.select(db.runs.c.status)).scalars().all() == ["failed"]
    assert Datasets(home).names() == []
