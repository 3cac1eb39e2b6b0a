"""Running a pipeline: each step a job on the floor, cached by the hash of inputs + params + code.

The runner only decides what runs and records what happened; a `StepExecutor` runs each
step's command (`FloorExecutor`: a job in the factory's queue, with its GPU share and
priority class; `LocalExecutor`: a plain subprocess, for a machine without a factory).
While a step runs, the runner tails the step's metrics file (`report.py`) and passes every
record on as a `StepEvent`, which the CLI and the demo show live.

Lineage of a run (recorded in `line_runs` and given to the registered model): the dataset
and holdout versions with their sha256, per step its kind, params, code hash, cache key and
whether it was reused, and the environment (python, torch, numpy, scikit-learn versions).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from aifactory.core.errors import AifactoryError, SpecError
from aifactory.line import db
from aifactory.line import home as default_home
from aifactory.line.artifacts import ArtifactStore
from aifactory.line.commands import StepCode, step_code
from aifactory.line.executors import StepExecutor, StepJob, StepOutcome
from aifactory.line.pipeline import Pipeline, Step, ancestors, validate
from aifactory.line.report import METRICS_ENV, read_metrics
from aifactory.line.step import OUTPUTS_FILE, STEP_DIR_ENV, STEP_FILE_ENV

POLL_S = 0.2  # how often a running step's metrics file is read
MAX_OUTPUTS_BYTES = 16 << 20  # a step's outputs.json: values, not data
LOG_TAIL = 2000  # characters of a failed step's log quoted in the error


@dataclass(frozen=True)
class StepEvent:
    step: str
    kind: str  # "started", "submitted" (job id known), "metrics", "cached", "finished", "failed"
    data: dict[str, Any] = field(default_factory=dict)


class StepFailed(AifactoryError):
    def __init__(self, step: str, outcome: StepOutcome, log_tail: str) -> None:
        where = f" (job {outcome.job_id})" if outcome.job_id is not None else ""
        state = outcome.state or f"exit code {outcome.exit_code}"
        super().__init__(f"step {step!r}{where} failed: {state}\n{log_tail}".rstrip())
        self.step = step
        self.outcome = outcome


@dataclass
class RunResult:
    run_id: int
    pipeline: str
    outputs: dict[str, dict[str, Any]]  # step -> its outputs
    cached: list[str]  # steps whose result was reused
    lineage: dict[str, Any]
    seconds: float


def cache_key(kind: str, params: dict[str, Any], inputs: dict[str, Any], code: str) -> str:
    blob = json.dumps({"kind": kind, "params": params, "inputs": inputs, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class PipelineRunner:
    def __init__(
        self,
        executor: StepExecutor,
        home: Path | None = None,
        on_event: Callable[[StepEvent], None] | None = None,
        use_cache: bool = True,
    ) -> None:
        self.home = default_home(home).absolute()  # steps run in their own folders
        self.executor = executor
        self.engine = db.open_engine(self.home)
        self.on_event = on_event or (lambda _e: None)
        self.use_cache = use_cache

    def settings(self) -> dict[str, Any]:
        """The effective settings of a run, saved with its lineage."""
        return {"home": str(self.home), "executor": type(self.executor).__name__, "use_cache": self.use_cache}

    async def run(self, pipeline: Pipeline) -> RunResult:
        """Validate (nothing runs on a bad spec), then run every step in order."""
        order = validate(pipeline)
        by_name = {s.name: s for s in pipeline.steps}
        started = time.time()
        run_id = self._start_run(pipeline.name, started)
        outputs: dict[str, dict[str, Any]] = {}
        lineage: dict[str, Any] = {"pipeline": pipeline.name, "run": run_id, "steps": {}, "settings": self.settings()}
        try:
            for step in order:
                inputs: dict[str, Any] = {"model": pipeline.model}
                for prior in order:  # ancestors' outputs, later ones overriding earlier ones
                    if prior.name in ancestors(step, by_name):
                        inputs.update(outputs[prior.name])
                inputs.update(self._declared_inputs(step, outputs))
                _note_lineage(lineage, inputs)
                outputs[step.name], lineage["steps"][step.name] = await self._step(
                    pipeline, step, run_id, inputs, lineage
                )
                _note_lineage(lineage, outputs[step.name])
        except (asyncio.CancelledError, KeyboardInterrupt):
            self._finish_run(run_id, "cancelled", lineage)
            raise
        except BaseException:
            self._finish_run(run_id, "failed", lineage)
            raise
        self._finish_run(run_id, "succeeded", lineage)
        cached = [name for name, record in lineage["steps"].items() if record["cached"]]
        return RunResult(run_id, pipeline.name, outputs, cached, lineage, time.time() - started)

    async def _step(
        self, pipeline: Pipeline, step: Step, run_id: int, inputs: dict[str, Any], lineage: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Reuse the step's cached result or run it; returns its outputs and its lineage record."""
        code = step_code(step, pipeline, inputs)
        missing = [k for k in code.required if k not in inputs]
        if missing:
            raise SpecError(
                f"steps.{step.name}.needs",
                f"step {step.name!r} needs {', '.join(missing)}, which no step before it gave",
            )
        key = cache_key(code.kind, step.params, inputs, code.digest)
        cacheable = step.cache if step.cache is not None else code.cache
        hit = self._cached(key) if cacheable and self.use_cache else None
        job_id = None
        if hit is not None:
            result = hit
            self.on_event(StepEvent(step.name, "cached", hit))
        else:
            if code.kind == "register":
                inputs = {**inputs, "lineage": {**lineage, "environment": inputs.get("environment", {})}}
            result, job_id = await self._run_step(pipeline, step, run_id, inputs, code)
            if cacheable:
                self._store(key, step.name, result)
        record = {
            "kind": code.kind,
            "params": step.params,
            "code": code.digest,
            "key": key[:16],
            "cached": hit is not None,
            "job": job_id,
        }
        return result, record

    async def _run_step(
        self, pipeline: Pipeline, step: Step, run_id: int, inputs: dict[str, Any], code: StepCode
    ) -> tuple[dict[str, Any], int | None]:
        workdir = self.home / "runs" / f"{run_id:05d}" / step.name
        workdir.mkdir(parents=True, exist_ok=True)
        metrics_file = workdir / "metrics.jsonl"
        step_file = workdir / "step.json"
        step_file.write_text(json.dumps({"params": step.params, "inputs": inputs}, sort_keys=True, default=str))
        (workdir / OUTPUTS_FILE).unlink(missing_ok=True)
        job = StepJob(
            step=step.name,
            command=code.command(step, inputs, workdir),
            env={
                "AIFACTORY_HOME": str(self.home),
                METRICS_ENV: str(metrics_file),
                STEP_FILE_ENV: str(step_file),
                STEP_DIR_ENV: str(workdir),
                # `python` in a user's command is the factory's, with the line's libraries
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]),
            },
            gpus=step.gpus if step.gpus is not None else code.gpus,
            project=pipeline.project,
            priority_class=pipeline.priority_class,
            workdir=workdir,
            cwd=code.cwd,
            time_limit_s=step.time_limit_s,
            on_submitted=lambda job_id: self.on_event(StepEvent(step.name, "submitted", {"job": job_id})),
        )
        self.on_event(StepEvent(step.name, "started", {"gpus": job.gpus}))
        began = time.perf_counter()
        task = asyncio.ensure_future(self.executor.run(job))
        offset = 0
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=POLL_S)
                records, offset = read_metrics(metrics_file, offset)
                for record in records:
                    self.on_event(StepEvent(step.name, "metrics", record))
                if done:
                    break
        except asyncio.CancelledError:  # interrupted: stop the step's job too
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        outcome = task.result()
        out_file = workdir / OUTPUTS_FILE
        problem = None
        if outcome.exit_code == 0:
            result, problem = self._collect(step, workdir, out_file, code.outputs_required)
        if outcome.exit_code != 0 or problem is not None:
            tail = outcome.log_path.read_text(errors="replace")[-LOG_TAIL:] if outcome.log_path else ""
            if outcome.exit_code == 0:
                outcome = StepOutcome(0, outcome.log_path, outcome.job_id, f"{outcome.state}, but {problem}")
            self.on_event(StepEvent(step.name, "failed", {"state": outcome.state, "job": outcome.job_id}))
            raise StepFailed(step.name, outcome, tail)
        self.on_event(
            StepEvent(step.name, "finished", {**result, "seconds": time.perf_counter() - began, "job": outcome.job_id})
        )
        return result, outcome.job_id

    def _collect(self, step: Step, workdir: Path, out_file: Path, required: bool) -> tuple[dict[str, Any], str | None]:
        """A finished step's outputs: its outputs.json, and its declared files moved into the artifact store.

        Returns (outputs, None), or ({}, what is wrong) when a declared output is missing.
        """
        if not out_file.is_file():
            if required:
                return {}, f"no {out_file.name}"
            result: dict[str, Any] = {}
        else:
            if out_file.is_symlink() or out_file.stat().st_size > MAX_OUTPUTS_BYTES:
                return {}, f"{out_file.name} is a link or larger than {MAX_OUTPUTS_BYTES >> 20} MiB"
            try:
                result = json.loads(out_file.read_text())
            except json.JSONDecodeError:
                return {}, f"{out_file.name} is not JSON"
            if not isinstance(result, dict):
                return {}, f"{out_file.name} is not a JSON object"
        store = ArtifactStore(self.home / "artifacts")
        files = dict(step.outputs)
        if isinstance(result.get("checkpoint"), str) and "checkpoint_sha256" not in result:
            files["checkpoint"] = result["checkpoint"]  # a model saved by the step helper
        inside = workdir.resolve()
        for key, name in files.items():
            path = Path(name) if Path(name).is_absolute() else workdir / name
            # The runner reads these files with its own rights: only regular files the step wrote in
            # its own folder, never a link (to the server's token, say) or a path elsewhere.
            if path.is_symlink() or not path.resolve().is_relative_to(inside):
                return {}, f"its output {key!r} ({name}) is a link or lies outside the step's folder"
            if not path.is_file():
                return {}, f"its declared output {key!r} ({name}) was not written"
            sha = store.put_file(path)
            result[key], result[f"{key}_sha256"] = str(store.get(sha)), sha
        return result, None

    def _declared_inputs(self, step: Step, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """A step's `inputs`: datasets resolved to one version (ref and sha256), ancestors' outputs by key."""
        from aifactory.line.datasets import Datasets

        resolved: dict[str, Any] = {}
        for key, ref in step.inputs.items():
            if ref.startswith("dataset:"):
                version = Datasets(self.home).resolve(ref.removeprefix("dataset:"))
                resolved[key], resolved[f"{key}_sha256"] = version.ref, version.sha256
                continue
            source, _, field = ref.partition(".")
            if field not in outputs.get(source, {}):
                raise SpecError(f"steps.{step.name}.inputs.{key}", f"{ref!r}: step {source!r} gave no output {field!r}")
            resolved[key] = outputs[source][field]
        return resolved

    # -- the step cache and the run records ----------------------------------------------

    def _cached(self, key: str) -> dict[str, Any] | None:
        t = db.step_cache
        with self.engine.begin() as conn:
            raw = conn.execute(sa.select(t.c.outputs).where(t.c.key == key)).scalar()
        if raw is None:
            return None
        outputs = json.loads(raw)
        # A result naming a stored file that is gone (a cleaned store) cannot be reused.
        store = str(self.home / "artifacts")
        for value in outputs.values():
            if isinstance(value, str) and value.startswith(store) and not Path(value).is_file():
                return None
        return outputs

    def _store(self, key: str, step: str, outputs: dict[str, Any]) -> None:
        t = db.step_cache
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.key == key))
            conn.execute(t.insert().values(key=key, step=step, outputs=json.dumps(outputs), created_at=time.time()))

    def _start_run(self, name: str, now: float) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                db.runs.insert().values(pipeline=name, status="running", lineage="{}", started_at=now)
            )
            key = result.inserted_primary_key
            assert key is not None  # an INSERT always has one
            return int(key[0])

    def _finish_run(self, run_id: int, status: str, lineage: dict[str, Any]) -> None:
        t = db.runs
        with self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where(t.c.id == run_id)
                .values(status=status, lineage=json.dumps(lineage, default=str), finished_at=time.time())
            )


def _note_lineage(lineage: dict[str, Any], values: dict[str, Any]) -> None:
    for key in ("dataset", "dataset_sha256", "holdout", "environment"):
        if key in values:
            lineage[key] = values[key]
