"""Energy on the Philly window: what powering idle nodes off (with packing) saves, and what it costs in wait.

    .venv/bin/python benchmarks/twin_energy.py [--policy fairshare] [--after 30min] [--boot 5min] [--rounds 5]

1. The Philly trace (68,503 jobs, 2,816 GPUs, priced as the P100s of its day: the catalogue's
   figures with their sources) replayed with every node always on, then with idle nodes powered
   off after `--after` and booted (`--boot`) when queued work needs them; packing placement
   (the floor's default) in both. Energy, saving, peak power and the change in mean wait.
2. What the power model costs a replay: the same replay without it and with it, alternating
   `--rounds` times in this process (which goes first alternates too, so neither always runs on
   the heap the other left), wall and CPU seconds of each; the ratio is the median of the rounds'
   own ratios, so a slow spell of this shared box falls on both sides of one (target: <= 1.10).

The last line is one JSON object: baseline_kwh, poweroff_pack_kwh, saving_pct, mean_wait_delta_s,
peak_kw, replay_wall_s, replay_wall_ratio_vs_no_power_model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from aifactory.core.factory import FactorySettings
from aifactory.twin.power import power_spec
from aifactory.twin.replay import RunResult, TwinSettings, replay
from aifactory.twin.scenarios import load_scenario
from aifactory.twin.sizing import parse_duration


def once(scenario: object, policy: str, power: object, after_s: float | None, boot_s: float) -> RunResult:
    settings = TwinSettings(
        factory=FactorySettings(policy=policy, placement="pack"),
        power=power,  # type: ignore[arg-type]
        poweroff_after_s=after_s,
        boot_s=boot_s,
    )
    return replay(scenario, settings)  # type: ignore[arg-type]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", default="fairshare")
    p.add_argument("--after", default="30min", help="idle time before a node is powered off")
    p.add_argument("--boot", default="5min", help="how long a node takes to boot")
    p.add_argument("--gpu", default="P100", help="the GPU that prices Philly's virtual GPUs")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--limit", type=int, default=None, help="only the first N jobs")
    a = p.parse_args()
    scenario = load_scenario("philly", a.limit, 8)
    power = power_spec(a.gpu)
    after, boot = parse_duration(a.after, "after"), parse_duration(a.boot, "boot")
    print(
        f"Philly: {len(scenario.jobs):,} jobs on {sum(n.gpu_count for n in scenario.nodes):,} GPUs, priced as {power.gpu}"
    )
    for key, source in power.sources.items():
        print(f"  {key}: {source}")

    base = once(scenario, a.policy, power, None, boot)
    off = once(scenario, a.policy, power, after, boot)
    b, o = base.summary, off.summary
    saving = 100 * (1 - o["energy_kwh"] / b["energy_kwh"])
    delta = o["first_wait_s_mean"] - b["first_wait_s_mean"]
    print(
        f"always on:       {b['energy_kwh']:,.0f} kWh, peak {b['peak_kw']:,.0f} kW, mean wait {b['first_wait_s_mean']:,.0f} s, "
        f"p95 {b['first_wait_s_p95']:,.0f} s"
    )
    print(
        f"power-off {a.after}: {o['energy_kwh']:,.0f} kWh, peak {o['peak_kw']:,.0f} kW, mean wait "
        f"{o['first_wait_s_mean']:,.0f} s, p95 {o['first_wait_s_p95']:,.0f} s; {o['power_offs']:,} power-offs, "
        f"{o['boots']:,} boots"
    )
    print(f"saving {saving:.1f} % of the facility's energy for {delta:+.0f} s of mean wait")

    timed: dict[bool, list[tuple[float, float]]] = {False: [], True: []}  # with the model? -> (wall, CPU)
    for i in range(a.rounds):
        for with_model in (False, True) if i % 2 == 0 else (True, False):
            t0, c0 = time.perf_counter(), time.process_time()
            once(scenario, a.policy, power if with_model else None, None, boot)
            timed[with_model].append((time.perf_counter() - t0, time.process_time() - c0))
    without, with_power = ([w for w, _ in timed[m]] for m in (False, True))
    ratio = statistics.median(x / y for x, y in zip(with_power, without, strict=True))
    cpu_ratio = statistics.median(x[1] / y[1] for x, y in zip(timed[True], timed[False], strict=True))
    print(
        f"replay wall, median of {a.rounds}: {statistics.median(without):.2f} s without the power model, "
        f"{statistics.median(with_power):.2f} s with it; median ratio of the rounds {ratio:.3f} (CPU {cpu_ratio:.3f})"
    )
    print(
        json.dumps(
            {
                "baseline_kwh": round(b["energy_kwh"], 1),
                "poweroff_pack_kwh": round(o["energy_kwh"], 1),
                "saving_pct": round(saving, 2),
                "mean_wait_delta_s": round(delta, 1),
                "p95_wait_baseline_s": round(b["first_wait_s_p95"], 1),
                "p95_wait_poweroff_s": round(o["first_wait_s_p95"], 1),
                "peak_kw": round(b["peak_kw"], 1),
                "peak_kw_poweroff": round(o["peak_kw"], 1),
                "baseline_tco2e": round(b["tco2e"], 1),
                "poweroff_tco2e": round(o["tco2e"], 1),
                "replay_wall_s": round(statistics.median(with_power), 3),
                "replay_wall_ratio_vs_no_power_model": round(ratio, 3),
                "replay_cpu_ratio_vs_no_power_model": round(cpu_ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
