"""The data flywheel: labelled feedback becomes the next dataset version, and a trigger starts a retrain.

The trigger fires on either signal (both configurable):
- `min_new_rows` labelled rows arrived since the last absorbed batch, or
- live accuracy of the served model over the last `window` labelled answers fell below
  `accuracy_below` (checked once at least `min_window` labels are in; a classifier's only: a
  regression model's flywheel turns on volume).

`absorb` moves the new labelled rows into the line: a share (`holdout_share`) goes to a new
version of the frozen holdout (so the gate judges the next challenger on the data the world
now sends), the rest to a new version of the training dataset; both know their parent. The
cursor into the feedback log is kept in `home/flywheel/<dataset>.json`, written atomically
after both versions exist, so a crash in between re-reads the same rows rather than losing them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aifactory.atomic import write_atomic
from aifactory.core.errors import SpecError
from aifactory.line import home as default_home
from aifactory.line.datasets import Datasets, DatasetVersion


class FeedbackSource(Protocol):
    """What the flywheel reads (aifactory.serve.feedback.FeedbackLog provides it)."""

    def labelled_since(self, cursor: int = 0, model: str | None = None) -> tuple[np.ndarray, np.ndarray, int]: ...
    def recent_accuracy(self, model: str, window: int = 200, version: int | None = None) -> float | None: ...


@dataclass(frozen=True)
class TriggerSettings:
    min_new_rows: int | None = 500  # None: never fire on volume alone
    accuracy_below: float | None = 0.9  # None: never fire on accuracy
    window: int = 200  # labelled answers the live accuracy is measured over
    min_window: int = 50  # labels needed before live accuracy counts
    holdout_share: float = 0.3  # of absorbed rows, added to the frozen holdout's next version
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_new_rows is not None and self.min_new_rows < 1:
            raise SpecError("min_new_rows", f"must be >= 1, got {self.min_new_rows}")
        if self.accuracy_below is not None and not 0 < self.accuracy_below <= 1:
            raise SpecError("accuracy_below", f"must be in (0, 1], got {self.accuracy_below}")
        if not 0 <= self.holdout_share < 1:
            raise SpecError("holdout_share", f"must be in [0, 1), got {self.holdout_share}")


@dataclass(frozen=True)
class TriggerDecision:
    fire: bool
    reason: str
    new_rows: int
    live_accuracy: float | None


def should_retrain(new_rows: int, live_accuracy: float | None, labels_seen: int, s: TriggerSettings) -> TriggerDecision:
    """The trigger rule on its two signals (pure)."""
    low = s.accuracy_below is not None and live_accuracy is not None and live_accuracy < s.accuracy_below
    if low and new_rows > 0 and labels_seen >= s.min_window:
        why = f"live accuracy {live_accuracy:.3f} over the last {labels_seen} labels < {s.accuracy_below}"
        return TriggerDecision(True, why, new_rows, live_accuracy)
    if s.min_new_rows is not None and new_rows >= s.min_new_rows:
        return TriggerDecision(True, f"{new_rows} new labelled rows >= {s.min_new_rows}", new_rows, live_accuracy)
    acc = f"{live_accuracy:.3f}" if live_accuracy is not None else "n/a"
    return TriggerDecision(
        False, f"{new_rows} new labelled rows, live accuracy {acc}: no retrain", new_rows, live_accuracy
    )


class Flywheel:
    def __init__(
        self,
        feedback: FeedbackSource,
        home: Path | None = None,
        settings: TriggerSettings | None = None,
        dataset: str = "digits",
        holdout: str | None = None,
        model: str = "digits",
    ) -> None:
        self.home = default_home(home)
        self.feedback = feedback
        self.settings = settings or TriggerSettings()
        self.datasets = Datasets(self.home)
        self.dataset = dataset
        self.holdout = holdout or f"{dataset}-holdout"
        self.model = model
        self._state_path = self.home / "flywheel" / f"{dataset}.json"

    @property
    def cursor(self) -> int:
        if not self._state_path.is_file():
            return 0
        return int(json.loads(self._state_path.read_text())["cursor"])

    def check(self) -> TriggerDecision:
        """Should the line retrain now? Reads the feedback log and the registry, changes nothing.

        Live accuracy is that of the current champion over its last `window` labelled answers;
        it counts once `min_window` labels have arrived since the last absorbed batch.
        """
        from aifactory.line.registry import CHAMPION, Registry

        x, _, _ = self.feedback.labelled_since(self.cursor, self.model)
        champion = Registry(self.home).alias_version(self.model, CHAMPION)
        acc = self.feedback.recent_accuracy(self.model, self.settings.window, version=champion)
        return should_retrain(len(x), acc, min(len(x), self.settings.window), self.settings)

    def absorb(self) -> tuple[DatasetVersion, DatasetVersion] | None:
        """New labelled rows -> next versions of the dataset and the holdout (in their own schema); None if none."""
        x, y, new_cursor = self.feedback.labelled_since(self.cursor, self.model)
        if len(y) == 0:
            return None
        order = np.random.default_rng(self.settings.seed + new_cursor).permutation(len(y))
        cut = round(len(y) * self.settings.holdout_share)
        held, kept = order[:cut], order[cut:]
        source = f"feedback rows up to #{new_cursor}"
        test = self.datasets.append(self.holdout, x[held], y[held], source=source) if cut else None
        train = self.datasets.append(self.dataset, x[kept], y[kept], source=source)
        self._save({"cursor": new_cursor, "dataset": train.ref, "holdout": test.ref if test else None})
        return train, test or self.datasets.get(self.holdout)

    def _save(self, state: dict[str, Any]) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self._state_path, json.dumps(state))
