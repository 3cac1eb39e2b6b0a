from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aifactory.core.errors import SpecError
from aifactory.line.executors import StepJob, StepOutcome
from aifactory.line.pipeline import Pipeline, Step, load_pipeline, parse_pipeline, validate
from aifactory.line.runner import PipelineRunner

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_pipeline.yaml"


def _steps(*specs: tuple[str, list[str]]) -> list[dict[str, object]]:
    return [{"name": name, "needs": needs} for name, needs in specs]


def test_example_pipeline_is_valid_and_ordered() -> None:
    order = validate(load_pipeline(EXAMPLE))
    assert [s.name for s in order] == ["ingest", "train", "evaluate", "register", "deploy"]


def test_python_spec_orders_steps_by_their_needs() -> None:
    p = Pipeline(
        name="p",
        steps=[
            Step(name="deploy", needs=["register"]),
            Step(name="register", needs=["evaluate"]),
            Step(name="evaluate", needs=["train"]),
            Step(name="train", needs=["ingest"]),
            Step(name="ingest", params={"dataset": "d"}),
        ],
    )
    assert [s.name for s in validate(p)] == ["ingest", "train", "evaluate", "register", "deploy"]


@pytest.mark.parametrize(
    ("steps", "field", "message"),
    [
        (_steps(("ingest", ["deploy"]), ("train", ["ingest"]), ("deploy", ["train"])), "steps", "cycle: "),
        (_steps(("ingest", []), ("train", ["ingset"])), "steps[1].needs", "did you mean 'ingest'"),
        ([{"name": "ingest"}, {"name": "fit", "kind": "trian", "needs": ["ingest"]}], "steps[1].kind", "'train'"),
        (_steps(("ingest", []), ("ingest", [])), "steps[1].name", "duplicate"),
        (_steps(("train", [])), "steps.train.needs", "needs dataset"),
        (_steps(("ingest", []), ("evaluate", ["ingest"])), "steps.evaluate.needs", "checkpoint"),
    ],
)
def test_bad_graphs_are_rejected_naming_the_field(steps: list[dict[str, object]], field: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        validate(parse_pipeline({"name": "p", "steps": steps}))
    assert err.value.field == field
    assert message in err.value.message


def test_cycle_message_names_the_loop() -> None:
    with pytest.raises(SpecError, match="cycle: ingest -> deploy -> train -> ingest"):
        validate(
            parse_pipeline(
                {"name": "p", "steps": _steps(("ingest", ["deploy"]), ("train", ["ingest"]), ("deploy", ["train"]))}
            )
        )


def test_relative_sources_are_relative_to_the_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    spec = tmp_path / "sub" / "p.yaml"
    spec.write_text("name: p\nsteps:\n  - {name: ingest, params: {dataset: d, source: data/x.csv}}\n")
    assert load_pipeline(spec).steps[0].params["source"] == str(tmp_path / "sub" / "data" / "x.csv")
    spec.write_text("name: p\nsteps:\n  - {name: ingest, params: {dataset: d, source: 'sklearn:digits'}}\n")
    assert load_pipeline(spec).steps[0].params["source"] == "sklearn:digits"


def test_malformed_yaml_and_fields(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p\nsteps: [ {name: ingest\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_pipeline(bad)
    with pytest.raises(SpecError, match="no such file"):
        load_pipeline(tmp_path / "missing.yaml")
    with pytest.raises(SpecError) as err:
        parse_pipeline({"name": "p", "steps": [{"name": "ingest", "gpus": -1}]})
    assert err.value.field == "steps[0].gpus"
    with pytest.raises(SpecError) as err:
        parse_pipeline({"name": "p", "steps": [{"name": "ingest", "retries": 3}]})
    assert err.value.field == "steps[0].retries"
    with pytest.raises(SpecError, match="mapping"):
        parse_pipeline(["ingest"])


class _Refuses:
    """An executor that records calls: a rejected spec must never reach it."""

    def __init__(self) -> None:
        self.jobs: list[StepJob] = []

    async def run(self, job: StepJob) -> StepOutcome:
        self.jobs.append(job)
        return StepOutcome(0, None)


def test_a_cyclic_pipeline_runs_nothing(home: Path) -> None:
    executor = _Refuses()
    pipeline = parse_pipeline({"name": "p", "steps": _steps(("ingest", ["train"]), ("train", ["ingest"]))})
    with pytest.raises(SpecError, match="cycle"):
        asyncio.run(PipelineRunner(executor, home).run(pipeline))
    assert executor.jobs == []
    assert not (home / "runs").exists()
