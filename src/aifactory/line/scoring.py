"""Scoring a model on a dataset version: the metrics the gate and the evaluate step know.

Classification: accuracy, f1 (macro), log_loss; regression: rmse, mae, r2. Each says whether
higher is better, so the gate can compare by any of them. Scores come from the model's own
predictor (any flavour), in batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aifactory.core.errors import SpecError, UnknownName
from aifactory.line.flavours import Predictor
from aifactory.line.signature import Signature

BATCH = 512  # rows scored per call


@dataclass(frozen=True)
class Metric:
    name: str
    task: str
    higher_is_better: bool
    fn: Callable[[np.ndarray, np.ndarray, Signature], float]


def _labels(out: np.ndarray, sig: Signature) -> np.ndarray:
    classes = np.asarray(sig.classes if sig.classes is not None else range(out.shape[1]))
    return classes[out.argmax(axis=1)]


def _accuracy(y: np.ndarray, out: np.ndarray, sig: Signature) -> float:
    return float((_labels(out, sig) == y).mean())


def _f1(y: np.ndarray, out: np.ndarray, sig: Signature) -> float:
    pred = _labels(out, sig)
    scores = []
    for c in np.unique(np.concatenate([y, pred])):
        tp = float(np.sum((pred == c) & (y == c)))
        denom = float(np.sum(pred == c) + np.sum(y == c))
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _log_loss(y: np.ndarray, out: np.ndarray, sig: Signature) -> float:
    classes = list(sig.classes if sig.classes is not None else range(out.shape[1]))
    index = np.array([classes.index(int(v)) if int(v) in classes else -1 for v in y])
    p = np.where(index >= 0, out[np.arange(len(y)), np.maximum(index, 0)], 0.0)
    return float(-np.mean(np.log(np.clip(p, 1e-15, 1.0))))


def _values(y: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return y.reshape(len(y), -1).astype(np.float64), out.reshape(len(y), -1).astype(np.float64)


def _rmse(y: np.ndarray, out: np.ndarray, _sig: Signature) -> float:
    t, p = _values(y, out)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def _mae(y: np.ndarray, out: np.ndarray, _sig: Signature) -> float:
    t, p = _values(y, out)
    return float(np.mean(np.abs(t - p)))


def _r2(y: np.ndarray, out: np.ndarray, _sig: Signature) -> float:
    t, p = _values(y, out)
    total = float(np.sum((t - t.mean(axis=0)) ** 2))
    return 1.0 - float(np.sum((t - p) ** 2)) / total if total else float("nan")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "classification", True, _accuracy),
        Metric("f1", "classification", True, _f1),
        Metric("log_loss", "classification", False, _log_loss),
        Metric("rmse", "regression", False, _rmse),
        Metric("mae", "regression", False, _mae),
        Metric("r2", "regression", True, _r2),
    )
}
DEFAULT_METRIC = {"classification": "accuracy", "regression": "rmse"}


def get_metric(name: str, task: str | None = None) -> Metric:
    if name not in METRICS:
        raise UnknownName("metric", name, METRICS)
    metric = METRICS[name]
    if task is not None and metric.task != task:
        raise SpecError("metric", f"{name} is a {metric.task} metric; this model does {task}")
    return metric


def outputs(predictor: Predictor, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        raise SpecError("dataset", "no rows to score")
    return np.concatenate([predictor.predict(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])


def score(predictor: Predictor, signature: Signature, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Every metric of the signature's task, plus per-class accuracy for classification."""
    out = outputs(predictor, x)
    result: dict[str, Any] = {m.name: m.fn(y, out, signature) for m in METRICS.values() if m.task == signature.task}
    if signature.task == "classification":
        hits = _labels(out, signature) == y
        result["per_class_accuracy"] = {str(int(c)): float(hits[y == c].mean()) for c in np.unique(y)}
    result["rows"] = len(y)
    return result


def score_one(predictor: Predictor, signature: Signature, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    m = get_metric(metric, signature.task)
    return m.fn(y, outputs(predictor, x), signature)
