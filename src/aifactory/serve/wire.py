"""Every type the serving API sends or receives, in one module.

Inputs are digits images flattened to 64 pixel intensities (8x8, values 0..16 as in
scikit-learn's `load_digits`); a request carries one or more rows.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

N_FEATURES = 64  # 8x8 pixels, row-major
N_CLASSES = 10
MAX_ROWS = 1024  # rows per request; larger requests are split by the client

# strict: a pixel is a JSON number; "3" or true are type errors, not silently coerced
Row = Annotated[list[Annotated[float, Field(strict=True)]], Field(min_length=N_FEATURES, max_length=N_FEATURES)]


class PredictRequest(BaseModel):
    """`inputs`: (B, 64) pixel rows; `request_id` optional (the server makes one)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    inputs: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]
    request_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None


class PredictResponse(BaseModel):
    """What the live model answered: one label and one probability row per input row."""

    request_id: str
    model: str
    version: int
    predictions: list[int]
    probabilities: list[list[float]]


class FeedbackRequest(BaseModel):
    """The true label(s) of an earlier request: `label` for a one-row request, else `labels` (one per row)."""

    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    label: Annotated[int, Field(ge=0, lt=N_CLASSES)] | None = None
    labels: (
        Annotated[list[Annotated[int, Field(ge=0, lt=N_CLASSES)]], Field(min_length=1, max_length=MAX_ROWS)] | None
    ) = None

    @model_validator(mode="after")
    def _one_of(self) -> FeedbackRequest:
        if (self.label is None) == (self.labels is None):
            raise ValueError("give exactly one of 'label' or 'labels'")
        return self

    def as_list(self) -> list[int]:
        """The labels, one per row of the original request."""
        return [self.label] if self.label is not None else list(self.labels or [])


class FeedbackResponse(BaseModel):
    request_id: str
    labelled: int


class ModelInfo(BaseModel):
    """The model being served and how: its registry reference, live version, batching and shadow."""

    model: str
    ref: str
    version: int
    checkpoint: str
    metrics: dict[str, Any]
    max_batch: int
    max_wait_ms: float
    batching: bool
    shadow_ref: str | None
    shadow_version: int | None
    swaps: int
    requests: int
    batches: int
    mean_batch_rows: float
    shadow_answered: int
    shadow_dropped: int
    largest_batch_rows: int
    log_dropped: int
    log_errors: int


class Health(BaseModel):
    status: str
    model: str
    version: int
