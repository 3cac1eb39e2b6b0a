"""The evaluation gate: a challenger becomes champion only if it beats the champion by a margin.

Both models are scored now, on the same frozen holdout (an immutable dataset version), so
the comparison never mixes numbers measured on different data. Every decision, promoted or
not, is recorded in the registry with both scores, the margin and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aifactory.core.errors import SpecError
from aifactory.line.datasets import Datasets
from aifactory.line.registry import CHAMPION, GateDecision, Registry


@dataclass(frozen=True)
class GateSettings:
    margin: float = 0.01  # accuracy points (0..1) the challenger must win by
    metric: str = "accuracy"
    alias: str = CHAMPION  # the alias a winner is given

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < 1.0:
            raise SpecError("margin", f"must be in [0, 1), got {self.margin}")
        if self.metric != "accuracy":
            raise SpecError("metric", f"only 'accuracy' is supported, got {self.metric!r}")


def decide(challenger: float, champion: float | None, margin: float) -> tuple[bool, str]:
    """The rule itself, on two scores: (promote?, why)."""
    if champion is None:
        return True, f"no champion yet; challenger scores {challenger:.4f}"
    delta = challenger - champion
    if delta >= margin:
        return True, f"challenger {challenger:.4f} beats champion {champion:.4f} by {delta:+.4f} >= margin {margin}"
    return False, f"challenger {challenger:.4f} vs champion {champion:.4f}: {delta:+.4f} < margin {margin}"


def run_gate(
    registry: Registry,
    datasets: Datasets,
    model: str,
    challenger: int,
    holdout: str,
    settings: GateSettings,
    challenger_score: float | None = None,
) -> GateDecision:
    """Score challenger (and champion) on `holdout`, decide, record, and move the alias if promoted.

    `challenger_score`: the challenger's score already measured on this very holdout version
    (the pipeline's evaluate step); the champion is always scored here, now.
    """
    holdout_version = datasets.resolve(holdout)
    x, y = datasets.load(holdout_version)
    cand = registry.get(model, challenger)
    champ_version = registry.alias_version(model, settings.alias)
    if challenger_score is not None:
        cand_score = challenger_score
    else:
        cand_score = _score(cand.checkpoint_path, x, y, settings.metric)
    if champ_version == challenger:
        promoted, reason, champ_score = False, f"v{challenger} is already {settings.alias}", cand_score
    else:
        champ_score = None
        if champ_version is not None:
            champ = registry.get(model, champ_version)
            champ_score = _score(champ.checkpoint_path, x, y, settings.metric)
        promoted, reason = decide(cand_score, champ_score, settings.margin)
    decision = registry.record_decision(
        GateDecision(
            model=model,
            challenger=challenger,
            champion=champ_version,
            metric=settings.metric,
            challenger_score=cand_score,
            champion_score=champ_score,
            margin=settings.margin,
            holdout=holdout_version.ref,
            promoted=promoted,
            reason=reason,
        )
    )
    if promoted:
        registry.set_alias(model, settings.alias, challenger, reason=f"gate: {reason}")
    return decision


def _score(checkpoint: Path, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    from aifactory.line.evaluate import evaluate_checkpoint  # imports torch: only when a model is scored

    return float(evaluate_checkpoint(checkpoint, x, y)[metric])
