"""Train a scikit-learn classifier on the step's dataset: run by the wine pipeline's `train` step."""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aifactory.line import step


def train(params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    x, y = step.dataset("dataset")  # the dataset version the ingest step gave (wine@N)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=float(params.get("C", 1.0)), max_iter=5000))
    model.fit(x, y)
    step.metric(train_accuracy=float(model.score(x, y)))
    step.save_model(model, signature=step.signature("dataset"))  # flavour sklearn, 13 named inputs, 3 classes
    return {"rows": len(y)}
