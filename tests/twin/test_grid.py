"""The grid's intensity over time: carbon by the hour, and flexible jobs started in the cleanest hour."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.project import Project
from aifactory.twin.grid import read_grid
from aifactory.twin.power import PowerSpec
from aifactory.twin.traces.format import Scenario
from aifactory.twin.whatif import Variant, run_variants

from .helpers import job


def daily(tmp_path: Path) -> Path:
    """Clean from midnight to 6 (100 g/kWh), dirty the rest of the day (500)."""
    path = tmp_path / "grid.csv"
    path.write_text("offset_h,g_per_kwh\n" + "".join(f"{h},{100 if h < 6 else 500}\n" for h in range(24)))
    return path


def test_a_daily_profile_repeats_and_integrates(tmp_path: Path) -> None:
    grid = read_grid(daily(tmp_path))
    assert grid.daily and grid.at(3 * 3600) == 100 and grid.at(7 * 3600) == 500 and grid.at(86400 + 3600) == 100
    assert grid.integral(5 * 3600, 7 * 3600) == pytest.approx(100 * 3600 + 500 * 3600)
    assert grid.cleanest_start(8 * 3600, 20 * 3600) == 86400  # the next midnight
    assert grid.cleanest_start(8 * 3600, 3600) == 8 * 3600  # nothing cleaner within an hour: now
    bad = tmp_path / "bad.csv"
    for text in ("offset_h,g\n0,1\n", "offset_h,g_per_kwh\n0,-3\n", "offset_h,g_per_kwh\n"):
        bad.write_text(text)
        with pytest.raises(SpecError) as err:
            read_grid(bad)
        assert err.value.field == "grid-csv"


def test_carbon_by_the_hour_and_a_flexible_job_waiting_for_clean_power(tmp_path: Path) -> None:
    grid = read_grid(daily(tmp_path))
    spec = PowerSpec(gpu="t", idle_w=0, busy_w=1000, host_w=0, pue=1.0, grid_series=grid)
    # Offsets count from the trace's start. An online minute at the start (clean, 100 g), then a
    # batch hour at 8 h (dirty: 1 kWh at 500 g, or 100 g if it waits for the next clean hour, at 24 h).
    jobs = [job(0.0, 1, 60.0, "online"), job(8 * 3600.0, 1, 3600.0, "batch")]
    scenario = Scenario("s", jobs, [NodeSpec("n0", 2)], [Project("batch", 1), Project("online", 1)])
    now, later = run_variants(
        scenario,
        [Variant("fifo"), Variant("fifo", carbon_delay_s=20 * 3600, flexible=("batch",))],
        power=spec,
    )
    assert now.summary["tco2e"] == pytest.approx((1.0 * 500 + 60 / 3600 * 100) / 1e6)
    assert later.summary["tco2e"] == pytest.approx((1.0 * 100 + 60 / 3600 * 100) / 1e6)
    assert later.summary["deferred_jobs"] == 1  # only the batch job waited: 16 h, to midnight
    assert later.summary["deferred_s_mean"] == pytest.approx(16 * 3600 / 2)
    with pytest.raises(SpecError, match="grid"):
        run_variants(scenario, [Variant("fifo", carbon_delay_s=3600, flexible=("all",))])
