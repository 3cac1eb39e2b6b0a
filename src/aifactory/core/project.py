"""Projects: who may use GPUs, how many are guaranteed, where."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Project:
    name: str
    quota: float = 0.0  # guaranteed GPUs
    weight: float = 1.0  # share of idle GPUs lent over quota
    limit: float | None = None  # hard cap on GPUs held at once
    pool: str | None = None  # node pool the project's jobs are bound to (None: any node)
    department: str | None = None
