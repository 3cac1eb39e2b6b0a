"""How a training job reports its per-epoch metrics to the factory: one call, one JSON line.

Inside a job::

    from aifactory.line.report import report
    report(epoch=3, loss=0.21, val_accuracy=0.96)

appends `{"t": <unix seconds>, "epoch": 3, "loss": 0.21, "val_accuracy": 0.96}` to the
file named by `$AIFACTORY_METRICS_FILE` (the pipeline runner sets it per step and shows
the lines live). Where the variable is unset (a job run by hand) the call does nothing,
so a workload needs no special case to run outside the factory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

METRICS_ENV = "AIFACTORY_METRICS_FILE"


def report(epoch: int | None = None, **metrics: float | int | str) -> None:
    """Record one set of metrics (numbers or short strings) for `epoch`."""
    target = os.environ.get(METRICS_ENV)
    if not target:
        return
    record: dict[str, Any] = {"t": time.time()}
    if epoch is not None:
        record["epoch"] = int(epoch)
    record.update(metrics)
    # One write of one line in append mode: lines from one job never interleave mid-line.
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_metrics(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Records appended to `path` since byte `offset`, and the offset to read from next time.

    A last line still being written (no newline yet) is left for the next call.
    """
    path = Path(path)
    if not path.is_file():
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    records = []
    for line in data[: end + 1].splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line a job wrote by hand in another format: not a metrics record
    return records, offset + end + 1
