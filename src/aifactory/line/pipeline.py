"""Pipeline specs: a named DAG of steps, from YAML or built in Python, checked before anything runs.

YAML::

    name: digits
    model: digits
    steps:
      - {name: ingest, params: {dataset: digits, source: "sklearn:digits"}}
      - {name: train, needs: [ingest], gpus: 1, params: {epochs: 8}}
      - {name: evaluate, needs: [train]}
      - {name: register, needs: [evaluate]}
      - {name: deploy, needs: [register], params: {margin: 0.01}}

Python: `Pipeline(name="digits", steps=[Step(name="ingest", params={...}), ...])`.
A step's `kind` defaults to its name. `validate` rejects unknown kinds, unknown or
duplicate step names, cycles, and steps whose required inputs no ancestor provides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aifactory.core.errors import SpecError, UnknownName
from aifactory.line.steps import STEP_KINDS, get_step_kind

# What each kind adds to the inputs of the steps after it (checked against `required`).
PROVIDES: dict[str, tuple[str, ...]] = {
    "ingest": ("dataset", "dataset_sha256", "holdout"),
    "train": ("checkpoint", "checkpoint_sha256", "val_accuracy"),
    "evaluate": ("holdout_accuracy",),
    "register": ("model", "version"),
    "deploy": ("promoted", "champion"),
}


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    kind: str | None = None  # default: the step's name
    needs: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    gpus: float | None = Field(default=None, gt=0)  # default: the kind's share
    cache: bool | None = None  # default: the kind's setting
    time_limit_s: float | None = Field(default=None, gt=0)

    @property
    def kind_name(self) -> str:
        return self.kind or self.name


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    model: str = "digits"  # the registry model the pipeline produces versions of
    project: str = "default"  # the floor project its jobs are charged to
    priority_class: str = "train"
    steps: list[Step] = Field(min_length=1)


def load_pipeline(path: Path) -> Pipeline:
    import yaml

    from aifactory.bounded import load_yaml, read_bounded

    path = Path(path)
    if not path.is_file():
        raise SpecError("pipeline", f"no such file: {path}")
    try:
        data = load_yaml(read_bounded(path, "pipeline"), "pipeline", path.name)
    except yaml.YAMLError as exc:
        raise SpecError("pipeline", f"{path.name} is not valid YAML: {exc}") from None
    pipeline = parse_pipeline(data)
    return pipeline.model_copy(update={"steps": [_anchor_source(s, path.parent) for s in pipeline.steps]})


def _anchor_source(step: Step, folder: Path) -> Step:
    """A relative file `source` is relative to the YAML file (steps run in their own folders)."""
    source = step.params.get("source")
    if not isinstance(source, str) or ":" in source or Path(source).is_absolute():
        return step
    return step.model_copy(update={"params": {**step.params, "source": str((folder / source).resolve())}})


def parse_pipeline(data: object) -> Pipeline:
    if not isinstance(data, dict):
        raise SpecError("pipeline", f"expected a mapping with 'name' and 'steps', got {type(data).__name__}")
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"]).replace(".[", "[")
        raise SpecError(field or "pipeline", err["msg"]) from None


def validate(pipeline: Pipeline) -> list[Step]:
    """The steps in an order that runs every step after its needs; SpecError on a bad graph."""
    by_name: dict[str, Step] = {}
    for i, step in enumerate(pipeline.steps):
        if step.name in by_name:
            raise SpecError(f"steps[{i}].name", f"duplicate step name {step.name!r}")
        if step.kind_name not in STEP_KINDS:
            raise SpecError(f"steps[{i}].kind", str(UnknownName("step kind", step.kind_name, STEP_KINDS)))
        by_name[step.name] = step
    for i, step in enumerate(pipeline.steps):
        for need in step.needs:
            if need not in by_name:
                raise SpecError(f"steps[{i}].needs", str(UnknownName("step", need, by_name)))
    order = _topological(pipeline.steps, by_name)
    _check_inputs(order, by_name)
    return order


def _topological(steps: list[Step], by_name: dict[str, Step]) -> list[Step]:
    """Depth-first order; a step met again while still on the path closes a cycle."""
    done: set[str] = set()
    path: list[str] = []
    order: list[Step] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise SpecError("steps", f"cycle: {' -> '.join(cycle)}")
        path.append(name)
        for need in by_name[name].needs:
            visit(need)
        path.pop()
        done.add(name)
        order.append(by_name[name])

    for step in steps:
        visit(step.name)
    return order


def ancestors(step: Step, by_name: dict[str, Step]) -> set[str]:
    seen: set[str] = set()
    stack = list(step.needs)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(by_name[name].needs)
    return seen


def _check_inputs(order: list[Step], by_name: dict[str, Step]) -> None:
    for step in order:
        kind = get_step_kind(step.kind_name)
        provided = {key for a in ancestors(step, by_name) for key in PROVIDES[by_name[a].kind_name]}
        missing = [key for key in kind.required if key not in provided]
        if missing:
            raise SpecError(
                f"steps.{step.name}.needs",
                f"step {step.name!r} ({kind.name}) needs {', '.join(missing)}, which no step it depends on provides",
            )
