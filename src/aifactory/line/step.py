"""The helper a pipeline step's own code uses: its parameters and inputs, its outputs and metrics.

Inside a step (a `command` or an `entry` of the user's, or a built-in kind)::

    from aifactory.line import step

    epochs = step.params().get("epochs", 10)
    x, y = step.dataset("dataset")              # the dataset version named by input 'dataset'
    ...
    step.metric(epoch=3, val_rmse=41.2)         # shown live; the last value of each is an output
    step.save_model(model, signature=step.signature("dataset"))   # checkpoint, flavour, signature
    step.output(rows=len(y))                     # any other JSON-able output

The runner writes `step.json` (params and resolved inputs) into the step's folder and names it
in `AIFACTORY_STEP_FILE`; outputs go to `outputs.json` beside it (written atomically, merged
call by call). Outside a pipeline (run by hand) `params()` and `inputs()` are empty and
outputs go to the current folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aifactory.atomic import write_atomic

STEP_FILE_ENV = "AIFACTORY_STEP_FILE"
STEP_DIR_ENV = "AIFACTORY_STEP_DIR"
OUTPUTS_FILE = "outputs.json"


def folder() -> Path:
    """The step's own folder: where its output files go."""
    return Path(os.environ.get(STEP_DIR_ENV) or ".").absolute()


def _spec() -> dict[str, Any]:
    path = os.environ.get(STEP_FILE_ENV)
    if not path:
        return {"params": {}, "inputs": {}}
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def params() -> dict[str, Any]:
    """The step's `params` from the pipeline."""
    return dict(_spec().get("params", {}))


def inputs() -> dict[str, Any]:
    """The step's inputs: its declared ones, resolved (dataset refs, artifact paths), and its ancestors' outputs."""
    return dict(_spec().get("inputs", {}))


def home() -> Path:
    from aifactory.line import home as default_home

    return default_home(None)


def dataset(key: str = "dataset") -> tuple[Any, Any]:
    """(X float32 (N, F), y) of the dataset version named by input `key`."""
    from aifactory.line.datasets import Datasets

    return Datasets(home()).load(_input_ref(key))


def table(key: str = "dataset") -> Any:
    """The dataset version named by input `key`, as an Arrow table."""
    from aifactory.line.datasets import Datasets

    return Datasets(home()).load_table(_input_ref(key))


def signature(key: str = "dataset", logits: bool = False) -> Any:
    """The signature of a model trained on the dataset named by input `key` (its features in, target out)."""
    from aifactory.line.datasets import Datasets
    from aifactory.line.signature import Signature

    return Signature.from_schema(Datasets(home()).schema(_input_ref(key)), logits=logits)


def _input_ref(key: str) -> str:
    from aifactory.core.errors import SpecError

    values = inputs()
    if key not in values:
        raise SpecError("inputs", f"the step has no input {key!r} (inputs: {', '.join(sorted(values)) or 'none'})")
    return str(values[key])


def output(**values: Any) -> None:
    """Record outputs of this step (JSON-able values), merged into outputs.json."""
    path = folder() / OUTPUTS_FILE
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.update(values)
    write_atomic(path, json.dumps(current, sort_keys=True, default=str))


def metric(epoch: int | None = None, **values: float | int | str) -> None:
    """Report metrics: shown live by `aifactory line run`, and the latest of each becomes an output."""
    from aifactory.line.report import report

    report(epoch=epoch, **values)
    output(**values)


def save_model(model: Any, signature: Any, flavour: str | None = None, init: dict[str, Any] | None = None) -> Path:
    """Save `model` (any flavour) into the step's folder; the outputs name it for the register step.

    `init`: the keyword arguments a torch module's class is built with.
    """
    from aifactory.line.flavours import save
    from aifactory.line.signature import Signature

    sig = signature if isinstance(signature, Signature) else Signature.model_validate(signature)
    path, kind = save(model, folder(), flavour, init)
    output(checkpoint=str(path), flavour=kind, signature=sig.model_dump(mode="json"))
    return path
