"""A reduced run of the flywheel demo: the embedded floor, the real server, real HTTP on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from aifactory.cli.line_demo import DemoSettings, run_flywheel_demo
from aifactory.line.datasets import Datasets
from aifactory.line.flywheel import TriggerSettings
from aifactory.line.registry import Registry


@pytest.mark.slow
def test_reduced_flywheel_demo_retrains_promotes_and_hot_swaps(home: Path) -> None:
    settings = DemoSettings(
        gpus=2,
        epochs=4,
        world_fraction=0.3,
        concurrency=4,
        trigger=TriggerSettings(min_new_rows=1000, accuracy_below=0.9, window=150, min_window=100),
    )
    console = Console(width=100, record=True, force_terminal=False)
    summary = run_flywheel_demo(console, settings, home)

    assert "live accuracy" in summary.trigger_reason  # the drop fired the trigger, not the volume
    assert summary.live_accuracy_after_shift < summary.live_accuracy_before_shift
    assert summary.promoted_version == 2 and summary.swapped
    assert summary.v2_accuracy_shifted > summary.v1_accuracy_shifted
    assert summary.requests_served == int(1797 * 0.3)  # every row of the world, once
    assert 0 < summary.p50_ms <= summary.p99_ms
    assert 0 < summary.time_to_first_prediction_s < summary.total_s

    ds = Datasets(home)
    v2 = ds.get("digits", 2)
    assert v2.parent == 1 and v2.rows > ds.get("digits", 1).rows
    reg = Registry(home)
    assert reg.aliases("digits")["champion"] == 2
    decisions = reg.decisions("digits")
    assert [d.promoted for d in decisions] == [True, True]
    assert decisions[1].holdout == "digits-holdout@2" and decisions[1].champion == 1
    assert reg.resolve("digits@2").lineage["dataset"] == "digits@2"
    # Every step ran as a job on the floor, and so did the server (an inference job).
    from aifactory.live.store import Store

    store = Store(f"sqlite:///{home / 'factory.db'}").open()
    try:
        jobs = store.list_jobs()
    finally:
        store.close()
    names = sorted(j.spec.name or "" for j in jobs)
    assert names.count("line:train") == 2 and "serve digits" in names
    assert {j.spec.priority_class for j in jobs if j.spec.name == "serve digits"} == {"inference"}
    assert "the flywheel, end to end" in console.export_text()
