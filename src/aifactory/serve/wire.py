"""Every type the serving API sends or receives, in one module.

A request carries one or more rows of the served model's inputs: each a list of numbers in the
signature's column order, or an object keyed by column name. What a row must hold is the
model's signature (`GET /v1/models/{name}` shows it); a row that does not fit is a 422 naming
the row and the column.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_ROWS = 1024  # rows per request; larger requests are split by the client
MAX_COLUMNS = 100_000  # values in one row

# strict: a value is a JSON number; "3" or true are type errors, not silently coerced
Number = Annotated[float, Field(strict=True)]
Row = (
    Annotated[list[Number], Field(min_length=1, max_length=MAX_COLUMNS)]
    | Annotated[dict[str, Number], Field(min_length=1, max_length=MAX_COLUMNS)]
)


class PredictRequest(BaseModel):
    """`inputs`: rows of the model's inputs; `request_id` optional (the server makes one)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    inputs: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]
    request_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None


class PredictResponse(BaseModel):
    """What the live model answered, per row: a class (with the probabilities) or a value (per target)."""

    request_id: str
    model: str
    version: int
    predictions: list[int] | list[float] | list[list[float]]
    probabilities: list[list[float]] | None = None


Label = Annotated[int, Field(strict=True)] | Annotated[float, Field(strict=True, allow_inf_nan=False)]


class FeedbackRequest(BaseModel):
    """The true label(s) of an earlier request: `label` for a one-row request, else `labels` (one per row).

    A label is one of the model's classes, or a regression target's value.
    """

    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    label: Label | None = None
    labels: Annotated[list[Label], Field(min_length=1, max_length=MAX_ROWS)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> FeedbackRequest:
        if (self.label is None) == (self.labels is None):
            raise ValueError("give exactly one of 'label' or 'labels'")
        return self

    def as_list(self) -> list[int | float]:
        """The labels, one per row of the original request."""
        return [self.label] if self.label is not None else list(self.labels or [])


class FeedbackResponse(BaseModel):
    request_id: str
    labelled: int


class ModelInfo(BaseModel):
    """The model being served and how: its registry reference, live version, signature, batching and shadow."""

    model: str
    ref: str
    version: int
    flavour: str
    signature: dict[str, Any]
    checkpoint: str
    metrics: dict[str, Any]
    measured_on: dict[str, str]
    max_batch: int
    max_wait_ms: float
    batching: bool
    inline: bool  # a full batch is quick enough to run on the event loop rather than a worker thread
    shadow_ref: str | None
    shadow_version: int | None
    swaps: int
    requests: int
    batches: int
    mean_batch_rows: float
    shadow_answered: int
    shadow_dropped: int
    largest_batch_rows: int
    model_cpu_s: float  # CPU seconds of the live model's calls (with its answers' lists) since start
    log_dropped: int
    log_errors: int


class Health(BaseModel):
    status: str
    model: str
    version: int
