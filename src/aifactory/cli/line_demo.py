"""The whole loop on the embedded factory: `python -m aifactory.cli.line_demo`.

raw digits file -> ingest -> train -> evaluate -> register -> gate -> serve (a job on the floor)
-> held-out requests -> the world shifts (thicker, noisier digits) and live accuracy drops ->
labelled feedback -> the trigger fires -> the feedback becomes the next dataset version ->
retrain -> the gate promotes v2 -> the server swaps to it without a restart -> summary.

Of scikit-learn's 1797 digits, `world_fraction` never enters the line: they are the world's
traffic (clean requests, shifted requests whose labels come back, and a shifted test set
that nothing trains on, on which v1 and v2 are compared at the end).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aifactory.line.demo_world import Traffic, World, make_world, send
from aifactory.line.executors import FloorExecutor, LocalExecutor, StepExecutor
from aifactory.line.flywheel import Flywheel, TriggerSettings
from aifactory.line.pipeline import Pipeline, Step
from aifactory.line.runner import PipelineRunner, RunResult


@dataclass(frozen=True)
class DemoSettings:
    gpus: int = 4  # virtual GPUs of the embedded factory
    epochs: int = 10
    world_fraction: float = 0.4  # digits kept out of the line as the world's traffic
    concurrency: int = 8  # clients sending requests at once
    margin: float = 0.01  # the gate's margin (accuracy)
    trigger: TriggerSettings = field(
        default_factory=lambda: TriggerSettings(min_new_rows=1000, accuracy_below=0.9, window=200, min_window=100)
    )
    use_floor: bool = True  # False: steps and server as plain subprocesses (no factory)
    seed: int = 0


@dataclass
class DemoSummary:
    """The demo's figures. "v2" is the champion at the end (v1 itself if the gate kept it)."""

    home: str
    v1_accuracy_shifted: float
    v2_accuracy_shifted: float
    v1_accuracy_clean_holdout: float
    v2_accuracy_clean_holdout: float
    live_accuracy_before_shift: float
    live_accuracy_after_shift: float
    live_accuracy_after_retrain: float
    time_to_first_prediction_s: float
    requests_served: int
    p50_ms: float
    p99_ms: float
    trigger_reason: str
    gate_reason: str
    promoted_version: int
    swapped: bool
    total_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def demo_pipeline(source: Path, s: DemoSettings) -> Pipeline:
    return Pipeline(
        name="digits",
        model="digits",
        steps=[
            Step(name="ingest", params={"dataset": "digits", "source": str(source), "holdout_fraction": 0.2}),
            Step(name="train", needs=["ingest"], gpus=1, params={"epochs": s.epochs, "seed": s.seed}),
            Step(name="evaluate", needs=["train"]),
            Step(name="register", needs=["evaluate"]),
            Step(name="deploy", needs=["register"], params={"margin": s.margin}),
        ],
    )


class _Line:
    """The factory the demo runs on: the embedded floor (or plain subprocesses) and a pipeline runner."""

    def __init__(self, home: Path, s: DemoSettings, console: Any) -> None:
        self.home, self.settings, self.console = home, s, console
        self.service: Any = None
        self.server_job: int | None = None
        self.server_proc: asyncio.subprocess.Process | None = None

    async def open(self) -> None:
        if self.settings.use_floor:
            from aifactory.live.service import FactoryService
            from aifactory.live.settings import LiveSettings

            self.service = await FactoryService.open(
                LiveSettings(home=self.home, gpus=self.settings.gpus, isolation="none")
            )

    def executor(self) -> StepExecutor:
        return FloorExecutor(self.service) if self.service is not None else LocalExecutor()

    async def run(self, pipeline: Pipeline, title: str) -> RunResult:
        from aifactory.cli.progress import PipelineProgress
        from aifactory.line.pipeline import validate

        with PipelineProgress(self.console, [s.name for s in validate(pipeline)], title=title) as progress:
            return await PipelineRunner(self.executor(), self.home, on_event=progress).run(pipeline)

    async def serve(self, ref: str, timeout_s: float = 60.0) -> str:
        """Start the model server (a job on the floor, inference class) and return its URL once bound."""
        import sys

        ready = self.home / "serve-ready.json"
        ready.unlink(missing_ok=True)
        command: tuple[str, ...] = (
            sys.executable,
            "-m",
            "aifactory.serve.server",
            "--model",
            ref,
            "--home",
            str(self.home),
        )
        command += ("--port", "0", "--ready-file", str(ready), "--poll-s", "0.2", "--max-wait-ms", "2")
        if self.service is not None:
            from aifactory.core.job import JobSpec

            spec = JobSpec(command=command, gpus=0.5, priority_class="inference", name="serve digits", user="line")
            self.server_job = (await self.service.submit(spec)).id
        else:
            log = open(self.home / "serve.log", "wb")  # noqa: SIM115 - the server outlives this call
            self.server_proc = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=log)
        return await self._wait_ready(ready, timeout_s)

    async def _wait_ready(self, ready: Path, timeout_s: float) -> str:
        import json

        from aifactory.core.errors import AifactoryError

        deadline = time.monotonic() + timeout_s
        while not ready.is_file():
            ended = self.server_proc is not None and self.server_proc.returncode is not None
            if self.server_job is not None:
                ended = self.service.job(self.server_job).state.terminal
            if ended or time.monotonic() > deadline:
                log = self.service.log_path(self.server_job) if self.server_job else self.home / "serve.log"
                tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
                raise AifactoryError(f"the model server did not come up:\n{tail}")
            await asyncio.sleep(0.05)
        return str(json.loads(ready.read_text())["url"])

    async def close(self) -> None:
        """Stop the server job (if it is still running) and the embedded factory."""
        try:
            if self.server_job is not None and not self.service.job(self.server_job).state.terminal:
                await self.service.cancel(self.server_job)
                await self.service.wait(self.server_job, timeout=30)
            if self.server_proc is not None and self.server_proc.returncode is None:
                self.server_proc.terminate()
                await self.server_proc.wait()
        finally:
            if self.service is not None:
                await self.service.close()


async def _wait_for_version(client: Any, version: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = (await client.get("/v1/models/digits")).json()
        if info.get("version") == version:
            return True
        await asyncio.sleep(0.1)
    return False


async def _demo(console: Any, s: DemoSettings, home: Path) -> DemoSummary:
    import httpx

    started = time.perf_counter()
    world = make_world(home / "incoming", s.world_fraction, s.seed)
    raw_at = time.perf_counter()  # the raw data file has arrived: the clock to first prediction starts
    console.rule("[bold]1. raw data -> first model")
    line = _Line(home, s, console)
    await line.open()
    try:
        first = await line.run(demo_pipeline(world.source, s), "pipeline run 1: digits v1")
        url = await line.serve("digits@champion")
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
            story = _Story(console, s, home, line, client, world, started, raw_at)
            await story.send_first(url)
            return await story.rest(int(first.outputs["register"]["version"]))
    finally:
        await line.close()


@dataclass
class _Story:
    """Phases 2-4 of the demo, sharing the served URL's client and the traffic record."""

    console: Any
    s: DemoSettings
    home: Path
    line: _Line
    client: Any
    world: World
    started: float
    raw_at: float
    traffic: Traffic = field(default_factory=Traffic)
    first_s: float = 0.0

    async def send_first(self, url: str) -> None:
        await send(self.client, self.world.clean[:1], self.world.clean_y[:1], self.traffic, True, 1)
        self.first_s = time.perf_counter() - self.raw_at
        self.console.print(f"first served prediction {self.first_s:.1f}s after the raw data arrived ({url})")

    async def rest(self, v1: int) -> DemoSummary:
        w, c, n = self.world, self.console, self.s.concurrency
        c.rule("[bold]2. serving v1: clean traffic, then the world shifts")
        clean = await send(self.client, w.clean[1:], w.clean_y[1:], self.traffic, True, n)
        c.print(f"clean requests: {clean.n}, live accuracy {clean.accuracy:.3f}")
        shifted = await send(self.client, w.shifted, w.shifted_y, self.traffic, True, n)
        c.print(f"shifted requests (thicker, noisier strokes): {shifted.n}, live accuracy {shifted.accuracy:.3f}")
        c.rule("[bold]3. the flywheel: feedback -> dataset v2 -> retrain -> gate")
        trigger, gate, champion = await self.flywheel(v1)
        swapped = await _wait_for_version(self.client, champion)
        c.rule(f"[bold]4. serving v{champion}" + (" (hot swapped)" if champion != v1 else ""))
        after = await send(self.client, w.test, w.test_y, self.traffic, False, n)
        c.print(f"shifted test requests served by v{after.versions[-1]}: live accuracy {after.accuracy:.3f}")
        scores = _offline_scores(self.home, w, v1, champion)
        return DemoSummary(
            home=str(self.home),
            v1_accuracy_shifted=scores[0][0],
            v2_accuracy_shifted=scores[1][0],
            v1_accuracy_clean_holdout=scores[0][1],
            v2_accuracy_clean_holdout=scores[1][1],
            live_accuracy_before_shift=clean.accuracy,
            live_accuracy_after_shift=shifted.accuracy,
            live_accuracy_after_retrain=after.accuracy,
            time_to_first_prediction_s=self.first_s,
            requests_served=self.traffic.n,
            p50_ms=self.traffic.percentile(50),
            p99_ms=self.traffic.percentile(99),
            trigger_reason=trigger,
            gate_reason=gate,
            promoted_version=champion,
            swapped=swapped and champion != v1,
            total_s=time.perf_counter() - self.started,
        )

    async def flywheel(self, v1: int) -> tuple[str, str, int]:
        """Check the trigger; if it fires, absorb the feedback and rerun the pipeline. (trigger, gate, champion)."""
        from aifactory.serve.feedback import FeedbackLog

        wheel = Flywheel(FeedbackLog(self.home), self.home, self.s.trigger)
        decision = wheel.check()
        self.console.print(f"trigger: {'FIRES' if decision.fire else 'quiet'} - {decision.reason}")
        if not decision.fire:
            return decision.reason, "no retrain", v1
        train, holdout = wheel.absorb() or (None, None)
        if train is not None and holdout is not None:
            self.console.print(f"feedback absorbed: {train.ref} (parent v{train.parent}), {holdout.ref}")
        pipeline = demo_pipeline(self.world.source, self.s)
        second = await self.line.run(pipeline, "pipeline run 2: retrain on the new version")
        deploy = second.outputs["deploy"]
        self.console.print(f"gate: {deploy['gate_reason']}")
        return decision.reason, str(deploy["gate_reason"]), int(deploy["champion"])


def _offline_scores(home: Path, world: World, v1: int, v2: int) -> list[tuple[float, float]]:
    """(accuracy on the shifted test set, on the first clean holdout) of v1 and v2, scored here."""
    from aifactory.line.datasets import Datasets
    from aifactory.line.registry import Registry
    from aifactory.line.scoring import score_one

    reg = Registry(home)
    hx, hy = Datasets(home).load("digits-holdout@1")
    out = []
    for version in (v1, v2):
        mv = reg.get("digits", version)
        model, sig = mv.predictor(), mv.input_signature
        out.append(
            (
                score_one(model, sig, world.test, world.test_y, "accuracy"),
                score_one(model, sig, hx, hy, "accuracy"),
            )
        )
    return out


def summary_table(summary: DemoSummary) -> Any:
    from rich.table import Table

    table = Table(title="the flywheel, end to end", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("accuracy of v1 on shifted digits (test set)", f"{summary.v1_accuracy_shifted:.3f}"),
        (f"accuracy of v{summary.promoted_version} on shifted digits (test set)", f"{summary.v2_accuracy_shifted:.3f}"),
        (
            "accuracy of v1 / v2 on the clean holdout",
            f"{summary.v1_accuracy_clean_holdout:.3f} / {summary.v2_accuracy_clean_holdout:.3f}",
        ),
        (
            "live accuracy: clean / shifted / after retrain",
            f"{summary.live_accuracy_before_shift:.3f} / {summary.live_accuracy_after_shift:.3f} / {summary.live_accuracy_after_retrain:.3f}",
        ),
        ("time from raw data to first served prediction", f"{summary.time_to_first_prediction_s:.1f} s"),
        ("requests served", str(summary.requests_served)),
        ("latency p50 / p99", f"{summary.p50_ms:.1f} / {summary.p99_ms:.1f} ms"),
        ("server swapped to the new champion without restart", "yes" if summary.swapped else "NO"),
        ("total time", f"{summary.total_s:.1f} s"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def run_flywheel_demo(
    console: Any = None, settings: DemoSettings | None = None, home: Path | None = None
) -> DemoSummary:
    """Run the whole loop; returns its figures. `home`: a fresh temporary directory by default."""
    from rich.console import Console

    console = console or Console()
    home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="aifactory-demo-"))
    home.mkdir(parents=True, exist_ok=True)
    summary = asyncio.run(_demo(console, settings or DemoSettings(), home))
    console.print(summary_table(summary))
    console.print(f"[dim]everything is kept in {home} (try: aifactory models show digits --home {home})[/]")
    return summary


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    from aifactory.core.errors import AifactoryError

    p = argparse.ArgumentParser(prog="python -m aifactory.cli.line_demo", description="The production line's flywheel.")
    p.add_argument("--home", type=Path, default=None, help="where to keep everything (default: a new temp dir)")
    p.add_argument("--local", action="store_true", help="run steps and the server as plain subprocesses")
    p.add_argument("--epochs", type=int, default=DemoSettings.epochs)
    args = p.parse_args(argv)
    try:
        summary = run_flywheel_demo(None, DemoSettings(use_floor=not args.local, epochs=args.epochs), args.home)
    except AifactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.as_dict().items() if isinstance(v, int | float)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
