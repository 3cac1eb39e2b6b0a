"""A model's signature: the input columns it takes and what it answers, and checking requests against it.

Inputs are rows of numbers, one per input column, given as a list in column order or as an
object keyed by column name. Outputs are class probabilities (classification: one per class,
in `classes` order) or values (regression: one per target). Every check raises
`SpecError` naming the row and the column, e.g. `inputs[3].bmi`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aifactory.core.errors import SpecError
from aifactory.line.tables import Column, TableSchema


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: list[Column] = Field(min_length=1)
    task: Literal["classification", "regression"]
    classes: list[int] | None = None  # classification: the label of each probability column
    targets: list[str] = Field(default_factory=lambda: ["target"])  # regression: one output per target
    logits: bool = False  # the model answers logits (softmax is applied); else probabilities

    @classmethod
    def from_schema(cls, schema: TableSchema, logits: bool = False) -> Signature:
        """The signature of a model trained on a table with this schema (its features in, its target out)."""
        if schema.task == "none":
            raise SpecError("signature", "the dataset has no target: a model of it needs an explicit signature")
        text = [c.name for c in schema.features if c.type == "string"]
        if text:
            raise SpecError(text[0], f"column {text[0]!r} is text: a served model takes numeric inputs")
        return cls(
            inputs=schema.features, task=schema.task, classes=schema.classes, targets=schema.target, logits=logits
        )

    @property
    def width(self) -> int:
        return len(self.inputs)

    @property
    def outputs(self) -> int:
        return len(self.classes or []) if self.task == "classification" else len(self.targets)

    def rows(self, rows: list[Any]) -> np.ndarray:
        """Request rows (lists in column order, or objects by column name) -> float32 (B, F)."""
        names = [c.name for c in self.inputs]
        width = len(names)
        out = np.empty((len(rows), width), dtype=np.float32)
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                if len(row) != width or any(n not in row for n in names):
                    missing = [n for n in names if n not in row]
                    if missing:
                        raise SpecError(f"inputs[{i}].{missing[0]}", f"inputs[{i}]: column {missing[0]!r} is missing")
                    extra = next(k for k in row if k not in names)
                    raise SpecError(f"inputs[{i}].{extra}", f"inputs[{i}]: {extra!r} is not an input column")
                values = [row[n] for n in names]
            elif isinstance(row, list):
                if len(row) != width:
                    raise SpecError(
                        f"inputs[{i}]", f"inputs[{i}]: expected {width} values ({_short(names)}), got {len(row)}"
                    )
                values = row
            else:
                raise SpecError(f"inputs[{i}]", f"inputs[{i}]: expected a list or an object, got {type(row).__name__}")
            for j, v in enumerate(values):
                if type(v) not in (int, float) or not math.isfinite(v):
                    raise SpecError(
                        f"inputs[{i}].{names[j]}", f"inputs[{i}].{names[j]}: expected a finite number, got {v!r}"
                    )
            out[i] = values
        return out

    def label(self, value: Any, field: str = "label") -> float:
        """A feedback label checked against the output: a known class, or a finite number."""
        if self.task == "classification":
            if type(value) is not int or (self.classes is not None and value not in self.classes):
                raise SpecError(field, f"{field}: expected one of the classes {self.classes}, got {value!r}")
            return float(value)
        if type(value) not in (int, float) or not math.isfinite(value):
            raise SpecError(field, f"{field}: expected a finite number, got {value!r}")
        return float(value)


def _short(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:3])}, ..., {names[-1]}"


def digits_signature() -> Signature:
    """The digits CNN: 64 pixels (8x8, row-major, 0..16) in, 10 class probabilities out."""
    return Signature(
        inputs=[Column(name=f"pixel_{r}_{c}", type="float") for r in range(8) for c in range(8)],
        task="classification",
        classes=list(range(10)),
    )
