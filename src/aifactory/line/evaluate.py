"""Scoring a checkpoint on a dataset version: accuracy overall and per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aifactory.line.digits_model import LoadedModel, load_checkpoint

BATCH = 512  # rows scored per forward pass


def score(model: LoadedModel, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """{"accuracy", "per_class_accuracy" {label: acc}, "rows"} of `model` on (x (N, 64), y (N,))."""
    preds = np.concatenate([model.predict(x[i : i + BATCH]) for i in range(0, len(y), BATCH)]) if len(y) else y
    hits = preds == y
    per_class = {str(int(c)): float(hits[y == c].mean()) for c in np.unique(y)}
    return {"accuracy": float(hits.mean()) if len(y) else float("nan"), "per_class_accuracy": per_class, "rows": len(y)}


def evaluate_checkpoint(checkpoint: Path, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return score(load_checkpoint(checkpoint, device="cpu"), x, y)
