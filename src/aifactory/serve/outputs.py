"""A batch's answers as the server sends them, made once per batch on the model's thread.

Per request, numpy's argmax, rounding and `tolist` on a one-row slice cost more CPU than the
request's share of the model itself; done once for the whole batch they cost a fraction of it.
Each request then takes its slice of plain lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Outputs:
    """Rows of answers: the raw outputs (for the prediction log) and what the response carries."""

    raw: np.ndarray  # (B, K) float32: class probabilities or values
    predictions: list[int] | list[float] | list[list[float]]  # a class, or a value (per target), per row
    probabilities: list[list[float]] | None  # per row, rounded to 6 places; None for regression

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, rows: slice) -> Outputs:
        probabilities = None if self.probabilities is None else self.probabilities[rows]
        return Outputs(self.raw[rows], self.predictions[rows], probabilities)


def outputs(raw: np.ndarray, classes: list[int] | None) -> Outputs:
    """The answers to rows whose model outputs are `raw`: classes (argmax) for a classifier, else values."""
    if classes is None:  # regression: one value per target
        values = raw[:, 0].tolist() if raw.shape[1] == 1 else raw.tolist()
        return Outputs(raw, values, None)
    return Outputs(raw, predicted_classes(raw, classes), np.round(raw, 6).tolist())


def predicted_classes(raw: np.ndarray, classes: list[int] | None) -> list[int]:
    """The class each row of a classifier's outputs predicts (its highest output; `classes` in output
    order, None: 0, 1, 2, ...). The server's answers and the prediction log both name it so."""
    best = raw.argmax(axis=1)
    if classes is None or classes == list(range(len(classes))):
        labels: list[int] = best.tolist()
        return labels
    return [classes[i] for i in best]
