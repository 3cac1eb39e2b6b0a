from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aifactory.core.errors import SpecError, UnknownName
from aifactory.line.datasets import Datasets
from aifactory.line.digits_model import DigitsConfig, build_model, save_checkpoint
from aifactory.line.gate import GateSettings, decide, run_gate
from aifactory.line.registry import Registry
from aifactory.line.train import TrainParams, train


def test_decide_needs_the_margin() -> None:
    assert decide(0.90, None, 0.01)[0]
    assert decide(0.95, 0.94, 0.01)[0]
    promoted, reason = decide(0.945, 0.94, 0.01)
    assert not promoted and "+0.0050 < margin 0.01" in reason
    with pytest.raises(SpecError) as err:
        GateSettings(margin=-0.1)
    assert err.value.field == "margin"
    # Lower is better (an error such as rmse): the challenger must be lower by the margin.
    assert decide(40.0, 45.0, 2.0, higher_is_better=False)[0]
    promoted, reason = decide(44.0, 45.0, 2.0, higher_is_better=False)
    assert not promoted and "+1.0000 < margin 2.0 (lower is better)" in reason
    assert not decide(50.0, 45.0, 0.0, higher_is_better=False)[0]
    with pytest.raises(UnknownName):
        GateSettings(metric="auroc")


def test_gate_promotes_only_a_better_challenger_and_records_every_decision(home: Path, tmp_path: Path) -> None:
    ds = Datasets(home)
    full = ds.create_from_sklearn("digits", "digits")
    x, y = ds.load(full)
    holdout = ds.create("digits-holdout", x[:300], y[:300]).ref
    cfg = DigitsConfig(widths=(8, 16), hidden=32)
    torch.manual_seed(0)
    untrained = save_checkpoint(tmp_path / "untrained.pt", build_model(cfg), cfg)
    trained_model, _ = train(x[300:], y[300:], cfg, TrainParams(epochs=3))
    trained = save_checkpoint(tmp_path / "trained.pt", trained_model, cfg)
    reg = Registry(home)
    weak = reg.register("digits", untrained, {}, {}).version
    strong = reg.register("digits", trained, {}, {}).version
    settings = GateSettings(margin=0.05)

    first = run_gate(reg, ds, "digits", weak, holdout, settings)
    assert first.promoted and first.champion is None and "no champion yet" in first.reason
    better = run_gate(reg, ds, "digits", strong, holdout, settings)
    assert better.promoted and better.champion == weak
    assert better.challenger_score >= better.champion_score + 0.05  # type: ignore[operator]
    worse = run_gate(reg, ds, "digits", weak, holdout, settings)
    assert not worse.promoted and worse.champion == strong and "< margin 0.05" in worse.reason
    same = run_gate(reg, ds, "digits", strong, holdout, settings)
    assert not same.promoted and "already champion" in same.reason

    assert reg.aliases("digits")["champion"] == strong
    recorded = reg.decisions("digits")
    assert [d.promoted for d in recorded] == [True, True, False, False]
    assert {d.holdout for d in recorded} == {"digits-holdout@1"}
    assert recorded[2].champion_score == pytest.approx(better.challenger_score)
