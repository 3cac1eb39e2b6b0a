"""Checkpoint reports through a file: the job touches it, the service notices the new mtime.

A job needs no token to say it checkpointed: the executor gives it the path in
`AIFACTORY_CHECKPOINT_FILE` (`checkpoint` in the job's own scratch directory, which its account
owns), and `aifactory.checkpoint.report()`
touches it. The service stats the files of running jobs every `checkpoint_poll_s` (one
stat per running job: microseconds each) and feeds a `Checkpoint(job_id)` to the core
for every mtime it has not seen. A file left by an earlier attempt is not a report: the
mtime at launch is the baseline.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def checkpoint_path(jobs_dir: Path, job_id: int) -> Path:
    return Path(jobs_dir) / f"job-{job_id}" / "checkpoint"


def _mtime_ns(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class CheckpointWatch:
    """The last mtime seen of each watched job's checkpoint file (None: no file)."""

    def __init__(self, jobs_dir: Path) -> None:
        self.jobs_dir = Path(jobs_dir)
        self._seen: dict[int, int | None] = {}

    def baseline(self, job_id: int) -> None:
        """Start watching a job as it launches: what its file holds now is old news."""
        self._seen[job_id] = _mtime_ns(checkpoint_path(self.jobs_dir, job_id))

    def poll(self, running: Iterable[int]) -> list[int]:
        """Jobs among `running` whose file changed since last seen; stops watching the others."""
        running = set(running)
        for job_id in [j for j in self._seen if j not in running]:
            del self._seen[job_id]
        reported = []
        for job_id in sorted(running):
            mtime = _mtime_ns(checkpoint_path(self.jobs_dir, job_id))
            if job_id not in self._seen:  # restored after a restart: start from what is there
                self._seen[job_id] = mtime
            elif mtime is not None and mtime != self._seen[job_id]:
                self._seen[job_id] = mtime
                reported.append(job_id)
        return reported
