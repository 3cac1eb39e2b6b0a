"""The built-in kinds of pipeline step, run by the same mechanism as a user's own steps.

Every step is a job that runs `python -m aifactory.line.entry TARGET` (or the user's command):
a built-in kind is an entry point `fn(params, inputs) -> outputs` in this package, with the
modules its result depends on (hashed into its cache key), whether its result may be reused,
its default GPU share, the inputs it needs and the outputs it gives.

Kinds: ingest -> train (the digits CNN) -> evaluate -> register -> deploy (the evaluation gate).
Any model trained by a user's step goes through evaluate, register and deploy the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifactory.core.errors import SpecError, UnknownName
from aifactory.line import home as default_home


@dataclass(frozen=True)
class StepKind:
    name: str
    entry: str  # module:function run by aifactory.line.entry
    modules: tuple[str, ...]  # the code a step's result depends on: hashed into its cache key
    cache: bool  # whether a result may be reused when inputs, params and code are unchanged
    gpus: float  # default GPU share of the step's job (the floor needs a positive share)
    required: tuple[str, ...] = ()  # input keys the step needs from its ancestors
    provides: tuple[str, ...] = ()  # output keys later steps may rely on


_MODEL_CODE = ("aifactory.line.flavours", "aifactory.line.signature", "aifactory.line.scoring")
STEP_KINDS: dict[str, StepKind] = {
    k.name: k
    for k in (
        StepKind(
            "ingest",
            "aifactory.line.kinds:ingest",
            ("aifactory.line.kinds", "aifactory.line.datasets", "aifactory.line.tables"),
            False,
            0.1,
            provides=("dataset", "dataset_sha256", "holdout"),
        ),
        StepKind(
            "train",
            "aifactory.line.train:step",
            ("aifactory.line.train", "aifactory.line.digits_model", "aifactory.line.datasets"),
            True,
            1.0,
            ("dataset",),
            ("checkpoint", "checkpoint_sha256", "flavour", "signature", "val_accuracy"),
        ),
        StepKind(
            "evaluate",
            "aifactory.line.kinds:evaluate",
            ("aifactory.line.kinds", "aifactory.line.datasets", "aifactory.line.digits_model", *_MODEL_CODE),
            True,
            0.25,
            ("checkpoint", "holdout"),
            ("evaluated_on",),
        ),
        StepKind(
            "register",
            "aifactory.line.kinds:register",
            ("aifactory.line.registry", *_MODEL_CODE),
            False,
            0.1,
            ("checkpoint",),
            ("model", "version"),
        ),
        StepKind(
            "deploy",
            "aifactory.line.kinds:deploy",
            ("aifactory.line.gate", *_MODEL_CODE),
            False,
            0.25,
            ("version", "holdout"),
            ("promoted", "champion"),
        ),
    )
}


def get_step_kind(name: str) -> StepKind:
    try:
        return STEP_KINDS[name]
    except KeyError:
        raise UnknownName("step kind", name, [*STEP_KINDS, "command"]) from None


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


def ingest(params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Snapshot `source` into `dataset` (train rows) and `holdout` (frozen test rows) once.

    `source`: `sklearn:NAME`, a data file (CSV, Parquet, .npz, .npy) or a directory of files.
    Later runs reuse the latest versions, which the flywheel appends to, unless `refresh`. A
    dataset made by hand (`aifactory datasets create`) that has no holdout yet is split once:
    the holdout takes its share and the rest becomes the dataset's next version.
    """
    import numpy as np

    from aifactory.line.datasets import FILES, Datasets
    from aifactory.line.tables import infer_schema, read_file

    ds = Datasets(default_home(None))
    name = str(params.get("dataset") or "")
    holdout = str(params.get("holdout") or f"{name}-holdout")
    fraction = float(params.get("holdout_fraction", 0.2))
    if not 0 < fraction < 1:
        raise SpecError("holdout_fraction", f"must be in (0, 1), got {fraction}")
    target = params.get("target")
    targets = [target] if isinstance(target, str) else target
    task = params.get("task")
    exists = name in ds.names()
    source = params.get("source")
    table = None
    if source and (not exists or params.get("refresh")):
        src = str(source)
        if src.startswith("sklearn:"):
            table = ds.load_table(ds.create_from_sklearn(f"{name}-raw", src.split(":", 1)[1]))
            schema = ds.schema(f"{name}-raw")
        elif Path(src).is_dir():
            files = ds.create_from_dir(name, Path(src))
            return {"dataset": files.ref, "dataset_sha256": files.sha256, "rows": files.rows}
        else:
            table = read_file(Path(src))
            schema = infer_schema(table, targets, task)
    elif not exists:
        raise SpecError("source", f"dataset {name!r} does not exist yet and the step names no source")
    elif holdout not in ds.names() and ds.get(name).kind != FILES:
        table, schema, source = ds.load_table(name), ds.schema(name), f"{ds.get(name).ref}"
    if table is not None:
        order = np.random.default_rng(int(params.get("seed", 0))).permutation(table.num_rows)
        cut = int(table.num_rows * fraction)
        if cut < 1 or cut >= table.num_rows:
            raise SpecError(
                "holdout_fraction", f"{fraction} of {table.num_rows} rows leaves no holdout or no training rows"
            )
        ds.create_table(holdout, table.take(order[:cut]), schema, source=f"holdout of {source}")
        ds.create_table(name, table.take(order[cut:]), schema, source=str(source))
    train = ds.get(name)
    out = {"dataset": train.ref, "dataset_sha256": train.sha256, "rows": train.rows}
    if holdout in ds.names():
        out["holdout"] = ds.get(holdout).ref
    return out


def evaluate(params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Score the checkpoint on the holdout by every metric of its task: `holdout_<metric>` outputs."""
    from aifactory.line.datasets import Datasets
    from aifactory.line.flavours import load
    from aifactory.line.scoring import score

    signature = _signature(inputs)
    flavour = str(inputs.get("flavour", "digits"))
    x, y = Datasets(default_home(None)).load(str(inputs["holdout"]))
    result = score(load(flavour, Path(inputs["checkpoint"]), signature), signature, x, y)
    out: dict[str, Any] = {f"holdout_{k}": v for k, v in result.items() if k != "rows"}
    out["evaluated_on"] = str(inputs["holdout"])
    return out


def _signature(inputs: dict[str, Any]) -> Any:
    from aifactory.line.signature import Signature, digits_signature

    raw = inputs.get("signature")
    if raw is None:
        if inputs.get("flavour", "digits") != "digits":
            raise SpecError("signature", "the step that saved the model gave no signature")
        return digits_signature()
    return Signature.model_validate(raw)


def register(params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Record the checkpoint as a new version (or find the version that already holds it)."""
    from aifactory.line.artifacts import ArtifactStore
    from aifactory.line.registry import CHALLENGER, Registry

    reg = Registry(default_home(None))
    model = str(params.get("model") or inputs.get("model") or "")
    prefixes = ("holdout_", "val_", "train_")
    metrics = {
        k: v for k, v in inputs.items() if (k.startswith(prefixes) or k == "loss") and isinstance(v, int | float)
    }
    dataset = str(inputs.get("dataset", ""))
    on = {"holdout_": str(inputs.get("evaluated_on", "")), "val_": f"validation split of {dataset}", "train_": dataset}
    measured_on = {k: on[p] for k in metrics for p in prefixes if k.startswith(p) and on[p]}
    if "loss" in metrics and dataset:
        measured_on["loss"] = dataset
    checkpoint = Path(inputs["checkpoint"])
    sha = inputs.get("checkpoint_sha256") or ArtifactStore(reg.home / "artifacts").put_file(checkpoint)
    existing = [v for v in (reg.versions(model) if model in reg.models() else []) if v.sha256 == sha]
    lineage = dict(inputs.get("lineage", {}))
    flavour = str(inputs.get("flavour", "digits"))
    signature = _signature(inputs) if flavour != "digits" or "signature" in inputs else None
    version = (
        existing[0] if existing else reg.register(model, checkpoint, metrics, lineage, flavour, signature, measured_on)
    )
    alias = str(params.get("alias", CHALLENGER))
    if reg.alias_version(model, alias) != version.version:
        reg.set_alias(model, alias, version.version, reason="registered by pipeline")
    return {"model": model, "version": version.version, "new_version": not existing}


def deploy(params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The evaluation gate: promote the registered version if it beats the champion by the margin.

    params: `metric` (default accuracy or rmse, by the model's task), `margin` (in the metric's
    units), `higher_is_better` (default: the metric's own direction).
    """
    from aifactory.line.datasets import Datasets
    from aifactory.line.gate import GateSettings, run_gate
    from aifactory.line.registry import Registry

    where = default_home(None)
    reg = Registry(where)
    higher = params.get("higher_is_better")
    settings = GateSettings(
        margin=float(params.get("margin", GateSettings.margin)),
        metric=params.get("metric"),
        higher_is_better=None if higher is None else bool(higher),
    )
    model = str(inputs["model"])
    version = reg.get(model, int(inputs["version"]))
    from aifactory.line.scoring import DEFAULT_METRIC

    metric = settings.metric or DEFAULT_METRIC[version.input_signature.task]
    # The evaluate step scored this checkpoint on this same holdout version: reuse its number.
    key = f"holdout_{metric}"
    score = inputs.get(key) if inputs.get("evaluated_on") == inputs["holdout"] else None
    decision = run_gate(reg, Datasets(where), model, version.version, str(inputs["holdout"]), settings, score)
    return {
        "promoted": decision.promoted,
        "champion": reg.alias_version(model, settings.alias),
        "gate_reason": decision.reason,
        "gate_metric": decision.metric,
        "challenger_score": decision.challenger_score,
        "champion_score": decision.champion_score,
    }
