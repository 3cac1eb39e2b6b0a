"""A self-contained HTML report of a what-if comparison: tables plus PNG plots inlined as base64.

Plots: CDF of the wait to the first start, of the time queued in all and of JCT per variant, GPUs allocated over time, mean GPUs held
per project against its quota, and each variant's per-project GPUs over time
(stacked). One file, no external assets.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aifactory.twin.metrics import per_job
from aifactory.twin.replay import RunResult
from aifactory.twin.whatif import COMPARE, comparison, figure_text

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}img{max-width:100%}"
)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return '<img alt="plot" src="data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode() + '">'


def _cdf_plot(results: Sequence[RunResult], key: str, label: str) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in results:
        values = per_job(r.recorder, r.durations)[key]
        values = np.sort(values[~np.isnan(values)])
        if len(values):
            # Log x-axis: waits and JCTs span seconds to weeks; +1 s keeps zero waits on the plot.
            ax.plot(values + 1.0, np.arange(1, len(values) + 1) / len(values), label=r.name)
    ax.set_xscale("log")
    ax.set_xlabel(f"{label} + 1 (s)")
    ax.set_ylabel("fraction of jobs")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _allocation_plot(results: Sequence[RunResult]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in results:
        days = [t / 86400 for t in r.samples.at]
        ax.plot(days, r.samples.allocated, label=r.name, linewidth=1)
    ax.set_xlabel("time (days)")
    ax.set_ylabel("GPUs allocated")
    ax.legend()
    ax.grid(alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _usage_plot(result: RunResult) -> str:
    """GPUs held per project over time, stacked, for one variant."""
    import matplotlib.pyplot as plt

    samples = result.samples
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = sorted(samples.by_project)
    if samples.at and names:
        days = [t / 86400 for t in samples.at]
        colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(names))]  # tab10 repeats after 10
        ax.stackplot(days, [samples.by_project[n] for n in names], labels=names, colors=colors)
        ax.legend(fontsize="small", ncol=2, loc="upper left")
    ax.set_xlabel("time (days)")
    ax.set_ylabel(f"GPUs held ({result.name})")
    ax.grid(alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _projects_plot(results: Sequence[RunResult]) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    names = sorted({p for r in results for p in r.summary["projects"]})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / (len(results) + 1)
    x = np.arange(len(names))
    quotas = [results[0].summary["projects"].get(n, {}).get("quota", 0.0) for n in names]
    ax.bar(x, quotas, width, label="quota", color="#ddd", edgecolor="#999")
    for i, r in enumerate(results, start=1):
        held = [r.summary["projects"].get(n, {}).get("mean_gpus", 0.0) for n in names]
        ax.bar(x + i * width, held, width, label=r.name)
    ax.set_xticks(x + width * len(results) / 2, names, rotation=45, ha="right")
    ax.set_ylabel("mean GPUs held")
    ax.legend()
    out = _png(fig)
    plt.close(fig)
    return out


def _cell(value: Any, key: str = "") -> str:
    return html.escape(figure_text(key, value))


def _table(results: Sequence[RunResult]) -> str:
    rows = comparison(results)
    head = "".join(f"<th>{html.escape(r['variant'])}</th>" for r in rows)
    lines = [("gpus", "GPUs"), *COMPARE, ("rejected", "rejected"), ("wall_s", "replay s")]
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{_cell(r[key], key)}</td>" for r in rows) + "</tr>"
        for key, label in lines
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def _project_table(result: RunResult) -> str:
    head = "<tr><th>project</th><th>jobs</th><th>quota</th><th>mean GPUs</th><th>share of quota</th>"
    head += "<th>mean wait to first start</th><th>mean time queued</th><th>slowdown</th></tr>"
    keys = ("jobs", "quota", "mean_gpus", "share_of_quota", "first_wait_mean_s", "queued_mean_s", "slowdown_mean")
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_cell(p[k], k)}</td>" for k in keys) + "</tr>"
        for name, p in result.summary["projects"].items()
    )
    settings = html.escape(json.dumps(asdict(result.settings), default=str))
    return f"<h3>{html.escape(result.name)}</h3><table>{head}{body}</table><p><code>{settings}</code></p>"


def _axes(ax: Any, x: str, y: str) -> None:
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend()
    ax.grid(alpha=0.3)


def _close(fig: Any) -> str:
    import matplotlib.pyplot as plt

    out = _png(fig)
    plt.close(fig)
    return out


def _power_plot(results: Sequence[RunResult]) -> str:
    """Facility power over time per variant (with a power model), and each one's peak."""
    import matplotlib.pyplot as plt

    if not any(r.samples.power_kw for r in results):
        return ""
    fig, ax = plt.subplots(figsize=(11, 3.5))
    for r in results:
        s = r.samples
        if s.power_kw:
            days = [(t - s.at[0]) / 86400 for t in s.at[: len(s.power_kw)]]
            peak = r.summary.get("peak_kw", max(s.power_kw))
            ax.plot(days, s.power_kw, label=f"{r.name} (peak {peak:,.0f} kW)")
    _axes(ax, "days", "facility kW")
    return "<h2>Facility power over time</h2>" + _close(fig)


def _sizes_plot(results: Sequence[RunResult]) -> str:
    """Waits, JCT and utilisation against cluster size, one line per policy (only with several sizes)."""
    import matplotlib.pyplot as plt

    by_policy: dict[str, list[RunResult]] = {}
    for r in results:
        by_policy.setdefault(r.settings.factory.policy, []).append(r)
    if len({r.recorder.total_gpus for r in results}) < 2:
        return ""
    fig, (left, right, energy) = plt.subplots(1, 3, figsize=(14, 3.5))
    for policy, runs in by_policy.items():
        runs = sorted(runs, key=lambda r: r.recorder.total_gpus)
        gpus = [r.recorder.total_gpus for r in runs]
        left.plot(gpus, [r.summary["first_wait_s_p95"] / 3600 for r in runs], marker="o", label=f"{policy} p95 wait")
        left.plot(gpus, [r.summary["jct_s_mean"] / 3600 for r in runs], marker="s", ls="--", label=f"{policy} mean JCT")
        right.plot(gpus, [r.summary["utilisation"] for r in runs], marker="o", label=policy)
        if all("energy_kwh" in r.summary for r in runs):
            energy.plot(gpus, [r.summary["energy_kwh"] / 1000 for r in runs], marker="o", label=policy)
    _axes(left, "GPUs", "hours")
    _axes(right, "GPUs", "utilisation")
    _axes(energy, "GPUs", "facility MWh")
    return "<h2>Against cluster size</h2>" + _close(fig)


def render(results: Sequence[RunResult], title: str = "aifactory twin") -> str:
    """The report as one HTML string."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to PNG bytes only
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        _table(results),
        _sizes_plot(results),
        _power_plot(results),
        "<h2>Wait to the first start</h2>",
        _cdf_plot(results, "first_wait", "wait to first start"),
        "<h2>Time queued, all stays</h2>",
        _cdf_plot(results, "queued", "time queued"),
        "<h2>Job completion time</h2>",
        _cdf_plot(results, "jct", "JCT"),
        "<h2>GPUs allocated over time</h2>",
        _allocation_plot(results),
        "<h2>Per project</h2>",
        _projects_plot(results),
        *(_usage_plot(r) for r in results),
        *(_project_table(r) for r in results),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(results: Sequence[RunResult], path: str | Path, title: str = "aifactory twin") -> Path:
    path = Path(path)
    path.write_text(render(results, title))
    return path
