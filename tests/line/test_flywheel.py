from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aifactory.core.errors import SpecError
from aifactory.line.datasets import Datasets
from aifactory.line.flywheel import Flywheel, TriggerSettings, should_retrain
from aifactory.line.registry import Registry
from aifactory.serve.feedback import LIVE, Answer, FeedbackLog

from .conftest import tiny_checkpoint


def _serve_and_label(log: FeedbackLog, n: int, right: int, version: int = 1, start: int = 0) -> np.ndarray:
    """Log `n` one-row live answers of digits@version; label them so that `right` of them were correct."""
    rng = np.random.default_rng(start)
    x = rng.uniform(0, 16, size=(n, 64)).astype(np.float32)
    for i in range(n):
        probs = np.full((1, 10), 0.01, dtype=np.float32)
        probs[0, 3] = 0.91  # the model always says 3
        log.log([Answer(f"r{start + i}", LIVE, "digits", version, x[i : i + 1], probs, 0.0)])
        log.add_feedback(f"r{start + i}", [3 if i < right else 5])
    return x


def test_trigger_rule() -> None:
    s = TriggerSettings(min_new_rows=100, accuracy_below=0.9, min_window=20)
    assert should_retrain(100, 0.99, 100, s).fire
    assert not should_retrain(99, 0.95, 99, s).fire
    low = should_retrain(30, 0.7, 30, s)
    assert low.fire and "live accuracy 0.700" in low.reason
    assert not should_retrain(10, 0.5, 10, s).fire  # too few labels to trust the accuracy yet
    assert not should_retrain(99, None, 0, s).fire
    with pytest.raises(SpecError):
        TriggerSettings(accuracy_below=1.5)


def test_feedback_becomes_new_dataset_and_holdout_versions(home: Path, tmp_path: Path) -> None:
    ds = Datasets(home)
    base_x = np.zeros((10, 64), dtype=np.float32)
    ds.create("digits", base_x, np.arange(10))
    ds.create("digits-holdout", base_x[:4], np.arange(4))
    reg = Registry(home)
    ckpt = tiny_checkpoint(tmp_path / "m.pt", "weights")
    reg.register("digits", ckpt, {}, {})
    reg.set_alias("digits", "champion", 1)

    log = FeedbackLog(home)
    wheel = Flywheel(log, home, TriggerSettings(min_new_rows=1000, accuracy_below=0.9, min_window=20, window=50))
    served = _serve_and_label(log, 40, right=20)
    decision = wheel.check()
    assert decision.fire and decision.new_rows == 40 and decision.live_accuracy == pytest.approx(0.5)

    train, holdout = wheel.absorb()  # type: ignore[misc]
    assert (train.ref, train.parent, train.rows) == ("digits@2", 1, 10 + 28)
    assert (holdout.ref, holdout.parent, holdout.rows) == ("digits-holdout@2", 1, 4 + 12)
    x2, y2 = ds.load(train)
    xh, yh = ds.load(holdout)
    # Every served row went to exactly one of the two, with its label.
    together = np.vstack([x2[10:], xh[4:]])
    assert sorted(map(bytes, together)) == sorted(map(bytes, served))
    assert sorted(np.concatenate([y2[10:], yh[4:]]).tolist()) == [3] * 20 + [5] * 20

    assert wheel.cursor == 40
    assert wheel.absorb() is None  # nothing new: no empty version
    assert not wheel.check().fire
    assert [v.version for v in ds.versions("digits")] == [1, 2]
    # A new champion is judged on its own answers only.
    reg.register("digits", tiny_checkpoint(ckpt, "other weights"), {}, {})
    reg.set_alias("digits", "champion", 2)
    _serve_and_label(log, 30, right=30, version=2, start=100)
    assert wheel.check().live_accuracy == 1.0
