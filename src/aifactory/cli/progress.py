"""Live progress of a pipeline run on a rich console: one row per step, per-epoch metrics as they come."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from aifactory.line.runner import StepEvent

STYLES = {"waiting": "dim", "running": "yellow", "done": "green", "cached": "cyan", "failed": "bold red"}


def _detail(kind: str, data: dict[str, Any]) -> str:
    if kind == "metrics" and "epoch" in data:
        of = f"/{data['epochs']}" if "epochs" in data else ""
        parts = [f"epoch {data['epoch']}{of}"]
        for key, value in data.items():
            if key not in ("t", "epoch", "epochs", "seconds") and isinstance(value, int | float) and len(parts) < 4:
                parts.append(f"{key} {value:.3f}")
        return "  ".join(parts)
    keys = ("gate_reason", "holdout_accuracy", "holdout_rmse", "val_accuracy", "val_rmse", "version", "dataset")
    for key in keys:
        if key in data:
            value = data[key]
            return f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
    return ""


class PipelineProgress:
    """Feed it StepEvents (it is the runner's `on_event`); use it as a context manager around the run."""

    def __init__(self, console: Console, steps: list[str], title: str = "pipeline") -> None:
        self.console = console
        self.title = title
        self.rows: dict[str, dict[str, Any]] = {s: {"state": "waiting", "job": "", "detail": ""} for s in steps}
        self._live = Live(self.render(), console=console, refresh_per_second=8, transient=False)

    def __enter__(self) -> PipelineProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.update(self.render())
        self._live.__exit__(None, None, None)
        if not self.console.is_terminal:
            # Off a terminal, rich prints the final frame without ending its last line.
            self.console.line()

    def __call__(self, event: StepEvent) -> None:
        row = self.rows.setdefault(event.step, {"state": "waiting", "job": "", "detail": ""})
        if event.kind == "started":
            row.update(state="running", began=time.perf_counter())
        elif event.kind == "cached":
            row.update(state="cached", detail=_detail(event.kind, event.data) or "reused", seconds=0.0)
        elif event.kind in ("finished", "failed"):
            row["state"] = "done" if event.kind == "finished" else "failed"
            row["seconds"] = time.perf_counter() - row.get("began", time.perf_counter())
            row["detail"] = _detail(event.kind, event.data) or event.data.get("state", "")
        elif event.kind == "metrics":
            row["detail"] = _detail(event.kind, event.data)
        if event.data.get("job") is not None:
            row["job"] = str(event.data["job"])
        self._live.update(self.render())

    def render(self) -> Table:
        table = Table(title=self.title, expand=False)
        for col in ("step", "state", "job", "time", "detail"):
            table.add_column(col)
        for name, row in self.rows.items():
            state = row["state"]
            if "seconds" in row:
                took = f"{row['seconds']:.1f}s"
            elif "began" in row:
                took = f"{time.perf_counter() - row['began']:.1f}s"
            else:
                took = ""
            # Text, not markup: the console prints user text (step names, reasons) with markup off
            table.add_row(name, Text(state, style=STYLES[state]), row["job"], took, row["detail"])
        return table
