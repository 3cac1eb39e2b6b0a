"""The evaluation gate: a challenger becomes champion only if it beats the champion by a margin.

Both models are scored now, on the same frozen holdout (an immutable dataset version), by the
metric the user names (higher or lower is better, as that metric is), so the comparison never
mixes numbers measured on different data. Every decision, promoted or not, is recorded in the
registry with both scores, the margin and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aifactory.core.errors import SpecError
from aifactory.line.datasets import Datasets
from aifactory.line.registry import CHAMPION, GateDecision, ModelVersion, Registry
from aifactory.line.scoring import DEFAULT_METRIC, get_metric, score_one


@dataclass(frozen=True)
class GateSettings:
    margin: float = 0.01  # in the metric's own units: how much better the challenger must be
    metric: str | None = None  # default: accuracy for classification, rmse for regression
    alias: str = CHAMPION  # the alias a winner is given
    higher_is_better: bool | None = None  # default: the metric's own direction

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise SpecError("margin", f"must be a number >= 0, got {self.margin}")
        if self.metric is not None:
            get_metric(self.metric)


def decide(challenger: float, champion: float | None, margin: float, higher_is_better: bool = True) -> tuple[bool, str]:
    """The rule itself, on two scores: (promote?, why)."""
    if champion is None:
        return True, f"no champion yet; challenger scores {challenger:.4f}"
    gain = challenger - champion if higher_is_better else champion - challenger
    better = "higher" if higher_is_better else "lower"
    if gain >= margin:
        return (
            True,
            f"challenger {challenger:.4f} beats champion {champion:.4f} by {gain:+.4f} >= margin {margin} ({better} is better)",
        )
    return (
        False,
        f"challenger {challenger:.4f} vs champion {champion:.4f}: {gain:+.4f} < margin {margin} ({better} is better)",
    )


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

    `challenger_score`: the challenger's score by this metric already measured on this very
    holdout version (the pipeline's evaluate step); the champion is always scored here, now.
    """
    holdout_version = datasets.resolve(holdout)
    x, y = datasets.load(holdout_version)
    cand = registry.get(model, challenger)
    signature = cand.input_signature
    metric = get_metric(settings.metric or DEFAULT_METRIC[signature.task], signature.task)
    higher = metric.higher_is_better if settings.higher_is_better is None else settings.higher_is_better
    champ_version = registry.alias_version(model, settings.alias)
    cand_score = challenger_score if challenger_score is not None else _score(cand, x, y, metric.name)
    if champ_version == challenger:
        promoted, reason, champ_score = False, f"v{challenger} is already {settings.alias}", cand_score
    else:
        champ_score = None
        if champ_version is not None:
            champ = registry.get(model, champ_version)
            if champ.input_signature.inputs != signature.inputs:
                raise SpecError("signature", f"v{challenger} takes other inputs than the champion v{champ_version}")
            champ_score = _score(champ, x, y, metric.name)
        promoted, reason = decide(cand_score, champ_score, settings.margin, higher)
    decision = registry.record_decision(
        GateDecision(
            model=model,
            challenger=challenger,
            champion=champ_version,
            metric=metric.name,
            challenger_score=cand_score,
            champion_score=champ_score,
            margin=settings.margin,
            holdout=holdout_version.ref,
            promoted=promoted,
            reason=reason,
            higher_is_better=higher,
        )
    )
    if promoted:
        registry.set_alias(model, settings.alias, challenger, reason=f"gate: {reason}")
    return decision


def _score(version: ModelVersion, x: object, y: object, metric: str) -> float:
    import numpy as np

    return score_one(version.predictor(), version.input_signature, np.asarray(x), np.asarray(y), metric)
