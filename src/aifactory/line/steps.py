"""The kinds of pipeline step, found by name, and the job entry point that runs one.

Each step runs as its own job on the floor: `python -m aifactory.line.steps KIND --home H
--params JSON --inputs JSON --out outputs.json` (the `train` kind runs the training
workload `python -m aifactory.line.train` instead). `inputs` are the outputs of the
step's ancestors, merged; a step writes its own outputs as JSON to `--out`.

Kinds: ingest -> train -> evaluate -> register -> deploy (the evaluation gate).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifactory.core.errors import AifactoryError, SpecError, UnknownName

StepFn = Callable[[Path, dict[str, Any], dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class StepKind:
    name: str
    modules: tuple[str, ...]  # the code a step's result depends on: hashed into its cache key
    cache: bool  # whether a result may be reused when inputs, params and code are unchanged
    gpus: float  # default GPU share of the step's job (the floor needs a positive share)
    required: tuple[str, ...] = ()  # input keys the step needs from its ancestors

    def command(self, home: Path, params: dict[str, Any], inputs: dict[str, Any], workdir: Path) -> tuple[str, ...]:
        out = str(workdir / "outputs.json")
        if self.name == "train":
            return (
                sys.executable,
                "-m",
                "aifactory.line.train",
                "--home",
                str(home),
                "--dataset",
                str(inputs["dataset"]),
                "--out",
                str(workdir / "model.pt"),
                "--config",
                json.dumps(params.get("config", {})),
                "--params",
                json.dumps({k: v for k, v in params.items() if k != "config"}),
                "--summary",
                out,
            )
        return (
            sys.executable,
            "-m",
            "aifactory.line.steps",
            self.name,
            "--home",
            str(home),
            "--params",
            json.dumps(params),
            "--inputs",
            json.dumps(inputs),
            "--out",
            out,
        )


STEP_KINDS: dict[str, StepKind] = {
    "ingest": StepKind(
        "ingest", ("aifactory.line.steps", "aifactory.line.datasets", "aifactory.line.readers"), False, 0.1
    ),
    "train": StepKind(
        "train",
        ("aifactory.line.train", "aifactory.line.digits_model", "aifactory.line.datasets"),
        True,
        1.0,
        ("dataset",),
    ),
    "evaluate": StepKind(
        "evaluate",
        ("aifactory.line.steps", "aifactory.line.evaluate", "aifactory.line.digits_model", "aifactory.line.datasets"),
        True,
        0.25,
        ("checkpoint", "holdout"),
    ),
    "register": StepKind("register", ("aifactory.line.registry",), False, 0.1, ("checkpoint",)),
    "deploy": StepKind(
        "deploy", ("aifactory.line.gate", "aifactory.line.evaluate"), False, 0.25, ("version", "holdout")
    ),
}


def get_step_kind(name: str) -> StepKind:
    try:
        return STEP_KINDS[name]
    except KeyError:
        raise UnknownName("step kind", name, STEP_KINDS) from None


def code_hash(kind: StepKind) -> str:
    """sha256 over the source of the modules a step kind runs (12 hex digits)."""
    digest = hashlib.sha256()
    for module in kind.modules:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise SpecError("step", f"module {module} of step kind {kind.name} not found")
        digest.update(module.encode())
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:12]


# -- the steps themselves (run inside the step's job) ---------------------------------------


def ingest(home: Path, params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Snapshot `source` into `dataset` (train rows) and `holdout` (frozen test rows) once.

    Later runs reuse the latest versions, which the flywheel appends to, unless `refresh`.
    """
    import numpy as np

    from aifactory.line.datasets import Datasets
    from aifactory.line.readers import read_table

    ds = Datasets(home)
    name = str(params.get("dataset") or "")
    holdout = str(params.get("holdout") or f"{name}-holdout")
    exists = name in ds.names()
    source = params.get("source")
    if source and (not exists or params.get("refresh")):
        if str(source).startswith("sklearn:"):
            which = str(source).split(":", 1)[1]
            x, y = ds.load(ds.create_from_sklearn(f"{name}-raw", which))
        else:
            x, y = read_table(Path(str(source)))
        fraction = float(params.get("holdout_fraction", 0.2))
        if not 0 < fraction < 1:
            raise SpecError("holdout_fraction", f"must be in (0, 1), got {fraction}")
        order = np.random.default_rng(int(params.get("seed", 0))).permutation(len(y))
        cut = int(len(y) * fraction)
        ds.create(holdout, x[order[:cut]], y[order[:cut]], source=f"holdout of {source}")
        ds.create(name, x[order[cut:]], y[order[cut:]], source=str(source))
    elif not exists:
        raise SpecError("source", f"dataset {name!r} does not exist yet and the step names no source")
    train, test = ds.get(name), ds.get(holdout)
    return {"dataset": train.ref, "dataset_sha256": train.sha256, "holdout": test.ref, "rows": train.rows}


def evaluate(home: Path, params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    from aifactory.line.datasets import Datasets
    from aifactory.line.evaluate import evaluate_checkpoint

    x, y = Datasets(home).load(str(inputs["holdout"]))
    result = evaluate_checkpoint(Path(inputs["checkpoint"]), x, y)
    return {
        "holdout_accuracy": result["accuracy"],
        "per_class_accuracy": result["per_class_accuracy"],
        "evaluated_on": str(inputs["holdout"]),
    }


def register(home: Path, params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Record the checkpoint as a new version (or find the version that already holds it)."""
    from aifactory.line.registry import CHALLENGER, Registry

    reg = Registry(home)
    model = str(params.get("model") or inputs.get("model") or "")
    metrics: dict[str, Any] = {
        k: inputs[k] for k in ("holdout_accuracy", "val_accuracy", "train_accuracy", "loss") if k in inputs
    }
    sha = inputs.get("checkpoint_sha256")
    existing = [v for v in (reg.versions(model) if model in reg.models() else []) if v.sha256 == sha]
    lineage = dict(inputs.get("lineage", {}))
    version = existing[0] if existing else reg.register(model, Path(inputs["checkpoint"]), metrics, lineage)
    alias = str(params.get("alias", CHALLENGER))
    if reg.alias_version(model, alias) != version.version:
        reg.set_alias(model, alias, version.version, reason="registered by pipeline")
    return {"model": model, "version": version.version, "new_version": not existing}


def deploy(home: Path, params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The evaluation gate: promote the registered version if it beats the champion by the margin."""
    from aifactory.line.datasets import Datasets
    from aifactory.line.gate import GateSettings, run_gate
    from aifactory.line.registry import Registry

    reg = Registry(home)
    settings = GateSettings(margin=float(params.get("margin", GateSettings.margin)))
    model = str(inputs["model"])
    # The evaluate step scored this checkpoint on this same holdout version: reuse its number.
    score = inputs.get("holdout_accuracy") if inputs.get("evaluated_on") == inputs["holdout"] else None
    decision = run_gate(reg, Datasets(home), model, int(inputs["version"]), str(inputs["holdout"]), settings, score)
    return {
        "promoted": decision.promoted,
        "champion": reg.alias_version(model, settings.alias),
        "gate_reason": decision.reason,
        "challenger_score": decision.challenger_score,
        "champion_score": decision.champion_score,
    }


STEP_FUNCTIONS: dict[str, StepFn] = {"ingest": ingest, "evaluate": evaluate, "register": register, "deploy": deploy}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aifactory.line.steps", description="Run one pipeline step.")
    p.add_argument("kind", choices=sorted(STEP_FUNCTIONS))
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--params", default="{}")
    p.add_argument("--inputs", default="{}")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        outputs = STEP_FUNCTIONS[args.kind](args.home, json.loads(args.params), json.loads(args.inputs))
    except AifactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(outputs, sort_keys=True))
    tmp.replace(args.out)
    print(json.dumps(outputs, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
