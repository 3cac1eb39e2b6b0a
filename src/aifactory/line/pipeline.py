"""Pipeline specs: a named DAG of steps, from YAML or built in Python, checked before anything runs.

YAML::

    name: wine
    model: wine
    steps:
      - {name: ingest, params: {dataset: wine, source: "sklearn:wine"}}
      - name: train                         # a step of the user's own: a command or an entry point
        needs: [ingest]
        command: python train.py --trees {params.trees}
        params: {trees: 100}
        code: [train.py]                    # hashed into the cache key with the command
      - {name: evaluate, needs: [train]}
      - {name: register, needs: [evaluate]}
      - {name: deploy, needs: [register], params: {metric: f1, margin: 0.0}}

A built-in step's `kind` defaults to its name (ingest, train, evaluate, register, deploy); a
step with `command` (a shell line, or a list run without a shell) or `entry`
(`module:function` or `file.py:function`) is kind `command`. Every step gets its ancestors'
outputs as inputs; `inputs` adds named ones: `dataset:NAME[@VERSION]` (resolved to one version
when the step starts) or `STEP.KEY` (an ancestor's output). `outputs` names the files a step
writes in its folder; they go into the artifact store and become outputs by key. `validate`
rejects unknown kinds, unknown or duplicate step names, cycles, inputs of non-ancestors, and
built-in steps whose required inputs no ancestor provides.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aifactory.core.errors import SpecError, UnknownName
from aifactory.line.kinds import STEP_KINDS, get_step_kind

COMMAND = "command"  # the kind of a user's own step
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    kind: str | None = None  # default: the step's name, or `command` for a command or entry
    needs: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    gpus: float | None = Field(default=None, gt=0)  # default: the kind's share (command: 1)
    cache: bool | None = None  # default: the kind's setting (command: cached)
    time_limit_s: float | None = Field(default=None, gt=0)
    command: str | list[str] | None = None
    entry: str | None = Field(default=None, max_length=1000)
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)  # key -> file the step writes in its folder
    code: list[str] = Field(default_factory=list)  # files or folders hashed into the cache key

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, value: Any) -> Any:
        """A list of file names keys each by its own name."""
        return {str(v): v for v in value} if isinstance(value, list) else value

    @property
    def kind_name(self) -> str:
        if self.kind:
            return self.kind
        return COMMAND if self.command is not None or self.entry is not None else self.name

    @property
    def custom(self) -> bool:
        return self.kind_name == COMMAND


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    model: str = "digits"  # the registry model the pipeline produces versions of
    project: str = "default"  # the floor project its jobs are charged to
    priority_class: str = "train"
    steps: list[Step] = Field(min_length=1)
    root: str | None = None  # the folder a user's steps run in (default: the YAML file's folder)


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
    root = str(path.parent.resolve())
    return pipeline.model_copy(
        update={"steps": [_anchor_source(s, path.parent) for s in pipeline.steps], "root": pipeline.root or root}
    )


def _anchor_source(step: Step, folder: Path) -> Step:
    """A relative file `source` is relative to the YAML file (steps run in their own folders)."""
    source = step.params.get("source")
    if not isinstance(source, str) or ":" in source or Path(source).is_absolute() or step.custom:
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
        _check_step(i, step)
        by_name[step.name] = step
    for i, step in enumerate(pipeline.steps):
        for need in step.needs:
            if need not in by_name:
                raise SpecError(f"steps[{i}].needs", str(UnknownName("step", need, by_name)))
    order = _topological(pipeline.steps, by_name)
    _check_inputs(order, by_name)
    return order


def _check_step(i: int, step: Step) -> None:
    where = f"steps[{i}]"
    if step.kind_name != COMMAND and step.kind_name not in STEP_KINDS:
        raise SpecError(f"{where}.kind", str(UnknownName("step kind", step.kind_name, [*STEP_KINDS, COMMAND])))
    if step.custom:
        if (step.command is None) == (step.entry is None):
            raise SpecError(f"{where}.command", f"step {step.name!r} needs exactly one of command or entry")
        if isinstance(step.command, list) and not step.command:
            raise SpecError(f"{where}.command", "an empty command")
        if isinstance(step.command, str) and not step.command.strip():
            raise SpecError(f"{where}.command", "an empty command")
    elif step.command is not None or step.entry is not None:
        raise SpecError(
            f"{where}.command", f"step {step.name!r} is the built-in kind {step.kind_name!r}: it takes no command"
        )
    for text in [*(step.command if isinstance(step.command, list) else [step.command or ""]), step.entry or ""]:
        if "\x00" in text:
            raise SpecError(f"{where}.command", "contains a NUL byte")
    for key, ref in step.inputs.items():
        if not KEY_RE.match(key):
            raise SpecError(f"{where}.inputs", f"{key!r} is not a valid input name")
        if not ref.startswith("dataset:") and "." not in ref:
            raise SpecError(f"{where}.inputs.{key}", f"{ref!r}: expected dataset:NAME[@VERSION] or STEP.KEY")
    for key, file in step.outputs.items():
        if not KEY_RE.match(key):
            raise SpecError(f"{where}.outputs", f"{key!r} is not a valid output name")
        parts = Path(file).parts
        if not file or Path(file).is_absolute() or ".." in parts or "\x00" in file:
            raise SpecError(f"{where}.outputs", f"{key}: {file!r} must be a path inside the step's folder")


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
    """Every STEP.KEY input names an ancestor; a built-in step's required inputs are provided.

    A user's step may give any output, so a built-in step after one is checked when it starts.
    """
    for step in order:
        before = ancestors(step, by_name)
        for key, ref in step.inputs.items():
            if not ref.startswith("dataset:"):
                source = ref.split(".", 1)[0]
                if source not in before:
                    raise SpecError(
                        f"steps.{step.name}.inputs.{key}", f"{ref!r}: {source!r} is not a step it depends on"
                    )
        if step.custom:
            continue
        kind = get_step_kind(step.kind_name)
        if any(by_name[a].custom for a in before):
            continue
        provided = {key for a in before for key in get_step_kind(by_name[a].kind_name).provides} | set(step.inputs)
        missing = [key for key in kind.required if key not in provided]
        if missing:
            raise SpecError(
                f"steps.{step.name}.needs",
                f"step {step.name!r} ({kind.name}) needs {', '.join(missing)}, which no step it depends on provides",
            )
