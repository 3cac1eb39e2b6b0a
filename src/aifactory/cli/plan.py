"""`aifactory plan ...` commands: parse, call `aifactory.plan`, print a rich table or `--json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from aifactory.cli.apps import new_app

app = new_app(no_args_is_help=True)

CATALOG_OPT = typer.Option(None, "--catalog", help="TOML file of GPUs/systems added to or overriding the catalogue.")
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object instead of a table.")
LAYERS_OPT = typer.Option(None, help="Transformer layers (with --hidden and --heads; default from N).")
HIDDEN_OPT = typer.Option(None, help="Hidden width (with --layers and --heads).")
HEADS_OPT = typer.Option(None, help="Attention heads (with --layers and --hidden).")
FIT_OPT = typer.Option("epoch", "--fit", help="Published L(N, D) fit: chinchilla or epoch (Epoch AI replication).")


def _emit(title: str, rows: list[tuple[str, str]], data: dict[str, Any], as_json: bool) -> None:
    """A two-column table of (quantity, value), or `data` as JSON."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def _shape(layers: int | None, hidden: int | None, heads: int | None) -> Any:
    """The model shape the user gave (all three or none), else None: derived from N."""
    from aifactory.core.errors import SpecError
    from aifactory.plan.memory import Shape

    given = [v for v in (layers, hidden, heads) if v is not None]
    if not given:
        return None
    if len(given) < 3:
        raise SpecError("layers", "give --layers, --hidden and --heads together, or none of them")
    return Shape(layers, hidden, heads)  # type: ignore[arg-type]


def _catalog(path: Path | None) -> Any:
    from aifactory.plan.catalog import load_catalog

    return load_catalog(path)


@app.command("gpus")
def gpus(catalog: Path | None = CATALOG_OPT, as_json: bool = JSON_OPT) -> None:
    """List the hardware catalogue: GPUs (dense TFLOPS, memory, bandwidth, power) and systems."""
    cat = _catalog(catalog)
    if as_json:
        typer.echo(json.dumps(cat.as_dict(), indent=2))
        return
    _print_catalog(cat)


def _print_catalog(cat: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:g}"

    table = Table(title="GPUs: dense tensor TFLOPS, memory GB, HBM GB/s, link GB/s, W, default MFU")
    for col in ("name", "gen", "FP8", "BF16", "FP16", "mem", "HBM", "link", "TDP", "meas. W", "MFU"):
        table.add_column(col, no_wrap=True)
    for g in cat.gpus.values():
        t = g.tflops
        table.add_row(
            g.name, g.generation, fmt(t.get("fp8")), fmt(t.get("bf16")), fmt(t.get("fp16")), fmt(g.memory_gb),
            fmt(g.memory_bw_gbs), fmt(g.nvlink_gbs or g.pcie_gbs), fmt(g.tdp_w), fmt(g.measured_power_w),
            f"{cat.default_mfu(g):.0%}",
        )  # fmt: skip
    systems = Table(title="Systems")
    for col in ("name", "GPUs", "FP16 TFLOPS", "memory GB", "rated kW"):
        systems.add_column(col, no_wrap=True)
    for s in cat.systems.values():
        systems.add_row(
            s.name, f"{s.gpus} x {s.gpu.name}", f"{s.peak_tflops('fp16'):g}", f"{s.memory_gb:g}", fmt(s.rated_kw)
        )
    console = Console(width=max(Console().width, 110))
    console.print(table)
    console.print(systems)
    aliases = "; ".join(f"{e.name}: {', '.join(e.aliases)}" for e in [*cat.gpus.values(), *cat.systems.values()])
    console.print(f"Names are case-insensitive; aliases: {aliases}. Sources: --json.")


def _footprint_rows(fp: Any, notes: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The footprint's rows; `notes` adds where a default came from (keys pue, grid)."""
    from aifactory.plan.energy import DEFAULT_SOURCES

    said = {k: f" (default: {DEFAULT_SOURCES[k]})" for k in (notes or {})}
    rows = [
        ("power per GPU", f"{fp.power_w:g} W"),
        ("IT energy", f"{fp.it_kwh / 1000:,.1f} MWh"),
        ("PUE", f"{fp.pue:g}{said.get('pue', '')}"),
        ("facility energy", f"{fp.facility_kwh / 1000:,.1f} MWh"),
        ("grid intensity", f"{fp.grid_g_per_kwh:g} gCO2e/kWh{said.get('grid', '')}"),
        ("emissions", f"{fp.tco2e:,.1f} tCO2e"),
    ]
    if fp.cost_usd is not None:
        rows.append(("cost", f"${fp.cost_usd:,.0f}"))
    return rows


@app.command("train")
def train(
    params: float | None = typer.Option(None, help="Model parameters N (e.g. 70e9); needed for memory and layout."),
    tokens: float | None = typer.Option(None, help="Training tokens D (e.g. 2e12): 6ND FLOPs."),
    flops: float | None = typer.Option(None, help="Training FLOPs, instead of --tokens (e.g. 3.14e23)."),
    gpu: str = typer.Option(..., help="GPU or system name (V100, A100-80GB, H100, DGX-H100...)."),
    gpus: int = typer.Option(..., help="Number of GPUs."),
    mfu: float | None = typer.Option(None, help="Model FLOPs utilisation; default by GPU generation (plan gpus)."),
    goodput: float | None = typer.Option(None, help="Fraction of held GPU time that advances training (default 0.9)."),
    precision: str = typer.Option("bf16", help="fp8, bf16, fp16 or fp32 tensor peak."),
    power_w: float | None = typer.Option(None, help="Power per GPU in W; default measured where published, else TDP."),
    pue: float | None = typer.Option(None, help="Power usage effectiveness (default 1.1 hyperscale; 1.58 average)."),
    grid: float | None = typer.Option(None, help="Grid carbon intensity, gCO2e/kWh (default 480, world 2023)."),
    usd_per_gpu_hour: float | None = typer.Option(None, help="Price per GPU-hour, USD."),
    usd_per_kwh: float | None = typer.Option(None, help="Price of facility energy, USD per kWh."),
    tp: int | None = typer.Option(None, help="Tensor-parallel degree (default: smallest layout that fits)."),
    pp: int | None = typer.Option(None, help="Pipeline-parallel degree (default: smallest layout that fits)."),
    zero: int = typer.Option(1, help="ZeRO stage 0-3 (sharding over data parallel)."),
    micro_batch: int = typer.Option(1, help="Micro-batch size in sequences."),
    seq_len: int = typer.Option(4096, help="Sequence length in tokens."),
    recompute: str = typer.Option("selective", help="Activation recomputation: none, selective or full."),
    layers: int | None = LAYERS_OPT,
    hidden: int | None = HIDDEN_OPT,
    heads: int | None = HEADS_OPT,
    catalog: Path | None = CATALOG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Time, energy, carbon, cost and memory per GPU of training N parameters on D tokens (6ND FLOPs)."""
    from aifactory.plan.energy import DEFAULT_SOURCES
    from aifactory.plan.train import DEFAULT_GOODPUT, GOODPUT_SOURCE, TrainSpec, plan_training

    facility = _facility(pue, grid, usd_per_gpu_hour, usd_per_kwh)
    spec = TrainSpec(
        params, tokens, gpu, gpus, mfu, goodput if goodput is not None else DEFAULT_GOODPUT, precision, power_w,
        tp, pp, zero, micro_batch, seq_len, recompute, _shape(layers, hidden, heads), flops,
    )  # fmt: skip
    p = plan_training(spec, _catalog(catalog), facility)
    m, par = p.memory, p.parallel
    what = "given" if flops is not None else "6ND"
    rows = [
        ("GPU", f"{gpus:,} x {p.gpu.name} ({p.peak_tflops:g} dense {precision} TFLOPS)"),
        ("training compute", f"{p.flops:.3e} FLOP ({what})"),
        ("MFU", f"{p.mfu:.0%} ({p.mfu_source})"),
        ("goodput", f"{spec.goodput:.0%}" + ("" if goodput is not None else f" (default: {GOODPUT_SOURCE})")),
        ("GPU-hours", f"{p.gpu_hours:,.0f}"),
        ("wall-clock", f"{p.days:,.1f} days"),
        *_footprint_rows(p.footprint),
        ("PUE", f"{facility.pue:g}" + ("" if pue is not None else f" (default: {DEFAULT_SOURCES['pue']})")),
        (
            "grid",
            f"{facility.grid_g_per_kwh:g} gCO2e/kWh"
            + ("" if grid is not None else f" (default: {DEFAULT_SOURCES['grid']})"),
        ),
    ]
    if p.idle_gpus:
        rows.append(
            (
                "idle GPUs",
                f"{p.idle_gpus:,} of {gpus:,}: no layout that fits divides them; the plan uses {p.gpus_used:,}. "
                f"Nearest above: {p.nearest_above:,} GPUs, {p.days_above:,.1f} days",
            )
        )
    if par is not None and m is not None and p.shape is not None:
        rows += [
            (
                "layout",
                f"tp={par.tp} pp={par.pp} dp={par.dp} ZeRO-{par.zero}, micro-batch {par.micro_batch} x {seq_len}",
            ),
            ("model shape", f"{p.shape.layers} layers, hidden {p.shape.hidden}, {p.shape.heads} heads"),
            (
                "memory per GPU",
                f"{m.total_gb:.1f} of {m.capacity_gb:g} GB (weights {m.weights_gb:.1f}, grads "
                f"{m.grads_gb:.1f}, optimizer {m.optimizer_gb:.1f}, activations {m.activations_gb:.1f}, overhead "
                f"{m.overhead_gb:g})",
            ),
        ]
    else:
        rows.append(("memory, layout", "give --params to check them"))
    data: dict[str, Any] = {
        "gpu": p.gpu.name,
        "gpus": gpus,
        "gpus_used": p.gpus_used,
        "idle_gpus": p.idle_gpus,
        "nearest_above": p.nearest_above or None,
        "days_above": p.days_above or None,
        "flops": p.flops,
        "peak_tflops": p.peak_tflops,
        "mfu": p.mfu,
        "mfu_source": p.mfu_source,
        "goodput": spec.goodput,
        "goodput_source": "given" if goodput is not None else GOODPUT_SOURCE,
        "gpu_hours": p.gpu_hours,
        "days": p.days,
        "power_w": p.footprint.power_w,
        "it_mwh": p.footprint.it_kwh / 1000,
        "pue": facility.pue,
        "pue_source": "given" if pue is not None else DEFAULT_SOURCES["pue"],
        "facility_mwh": p.footprint.facility_kwh / 1000,
        "grid_g_per_kwh": facility.grid_g_per_kwh,
        "grid_source": "given" if grid is not None else DEFAULT_SOURCES["grid"],
        "tco2e": p.footprint.tco2e,
        "cost_usd": p.footprint.cost_usd,
        "layout": None if par is None else {"tp": par.tp, "pp": par.pp, "dp": par.dp, "zero": par.zero},
        "memory_gb": None
        if m is None
        else {
            "weights": m.weights_gb,
            "grads": m.grads_gb,
            "optimizer": m.optimizer_gb,
            "activations": m.activations_gb,
            "overhead": m.overhead_gb,
            "total": m.total_gb,
            "capacity": m.capacity_gb,
        },
    }
    _emit("training plan", rows, data, as_json)


def _facility(pue: float | None, grid: float | None, usd_gpu_h: float | None, usd_kwh: float | None) -> Any:
    """The facility with the given figures, the documented defaults for the rest."""
    from aifactory.plan.energy import Facility

    defaults = Facility()
    return Facility(
        pue if pue is not None else defaults.pue,
        grid if grid is not None else defaults.grid_g_per_kwh,
        usd_gpu_h,
        usd_kwh,
    )


@app.command("compare")
def compare_hardware(
    on: list[str] = typer.Option(
        ..., "--on", help="NAME:COUNT[:USD_PER_DEVICE_HOUR] of a GPU, system or CPU socket (repeat to compare)."
    ),
    flops: float | None = typer.Option(None, help="Training FLOPs (e.g. 5e17 for AlexNet)."),
    params: float | None = typer.Option(None, help="Model parameters N (with --tokens: 6ND FLOPs)."),
    tokens: float | None = typer.Option(None, help="Training tokens D (with --params)."),
    efficiency: float | None = typer.Option(None, help="Fraction of peak achieved (default: MFU by generation)."),
    goodput: float | None = typer.Option(None, help="Fraction of held time that advances training (default 0.9)."),
    pue: float | None = typer.Option(None, help="Power usage effectiveness (default 1.1)."),
    grid: float | None = typer.Option(None, help="Grid carbon intensity, gCO2e/kWh (default 480)."),
    usd_per_kwh: float | None = typer.Option(None, help="Price of facility energy, USD per kWh."),
    catalog: Path | None = CATALOG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """GPUs and CPUs side by side for one workload: time, energy, carbon and cost of the same FLOPs."""
    from rich.console import Console
    from rich.table import Table

    from aifactory.core.errors import SpecError
    from aifactory.plan.compare import compare, parse_hardware
    from aifactory.plan.energy import DEFAULT_SOURCES
    from aifactory.plan.train import DEFAULT_GOODPUT, GOODPUT_SOURCE, training_flops

    if flops is None:
        if params is None or tokens is None:
            raise SpecError("flops", "give --flops, or --params and --tokens")
        flops = training_flops(params, tokens)
    elif params is not None or tokens is not None:
        raise SpecError("flops", "give --flops, or --params and --tokens, not both")
    facility = _facility(pue, grid, None, usd_per_kwh)
    chosen_goodput = goodput if goodput is not None else DEFAULT_GOODPUT
    sides = compare(flops, [parse_hardware(h) for h in on], _catalog(catalog), facility, efficiency, chosen_goodput)
    notes = {
        "goodput": "given" if goodput is not None else GOODPUT_SOURCE,
        "pue": "given" if pue is not None else DEFAULT_SOURCES["pue"],
        "grid": "given" if grid is not None else DEFAULT_SOURCES["grid"],
    }
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "flops": flops,
                    "goodput": chosen_goodput,
                    "pue": facility.pue,
                    "grid_g_per_kwh": facility.grid_g_per_kwh,
                    "sources": notes,
                    "sides": [
                        {
                            "name": s.name, "kind": s.kind, "count": s.count, "peak_tflops": s.peak_tflops,
                            "precision": s.precision, "efficiency": s.efficiency,
                            "efficiency_source": s.efficiency_source, "days": s.days,
                            "device_hours": s.footprint.gpu_hours, "power_w": s.footprint.power_w,
                            "facility_kwh": s.footprint.facility_kwh, "tco2e": s.footprint.tco2e,
                            "cost_usd": s.cost_usd,
                        }
                        for s in sides
                    ],
                },
                indent=1,
            )
        )  # fmt: skip
        return
    table = Table(title=f"{flops:.3e} FLOP, goodput {chosen_goodput:.0%}, PUE {facility.pue:g}")
    for col in (
        "hardware",
        "peak each",
        "efficiency",
        "wall-clock",
        "device-hours",
        "facility energy",
        "tCO2e",
        "cost",
    ):
        table.add_column(col, justify="left" if col == "hardware" else "right")
    for s in sides:
        table.add_row(
            f"{s.count:,} x {s.name} ({s.kind})",
            f"{s.peak_tflops:g} {s.precision} TFLOPS",
            f"{s.efficiency:.0%}",
            _duration_days(s.days),
            f"{s.footprint.gpu_hours:,.{0 if s.footprint.gpu_hours >= 10 else 2}f}",
            f"{s.footprint.facility_kwh:,.{0 if s.footprint.facility_kwh >= 10 else 2}f} kWh",
            f"{s.footprint.tco2e:,.2f}",
            f"${s.cost_usd:,.0f}" if s.cost_usd is not None else "-",
        )
    console = Console(markup=False, emoji=False)
    console.print(table)
    for s in sides:
        console.print(f"efficiency of {s.name}: {s.efficiency_source}")
    for key, source in notes.items():
        console.print(f"{key}: {source}")


def _duration_days(days: float) -> str:
    return f"{days * 24:,.1f} hours" if days < 2 else f"{days:,.1f} days"


@app.command("energy")
def energy(
    gpu: str = typer.Option(..., help="GPU or system name (sets the default power per GPU)."),
    gpus: int | None = typer.Option(None, help="Number of GPUs (with --days)."),
    days: float | None = typer.Option(None, help="Wall-clock days (with --gpus)."),
    gpu_hours: float | None = typer.Option(None, help="GPU-hours (instead of --gpus and --days)."),
    power_w: float | None = typer.Option(None, help="Power per GPU in W; default measured where published, else TDP."),
    pue: float = typer.Option(1.1, help="Power usage effectiveness."),
    grid: float = typer.Option(480.0, help="Grid carbon intensity, gCO2e/kWh."),
    params: float | None = typer.Option(None, help="Model parameters, to print the implied MFU."),
    tokens: float | None = typer.Option(None, help="Training tokens, to print the implied MFU."),
    usd_per_gpu_hour: float | None = typer.Option(None, help="Price per GPU-hour, USD."),
    usd_per_kwh: float | None = typer.Option(None, help="Price of facility energy, USD per kWh."),
    catalog: Path | None = CATALOG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Energy, carbon and cost of GPU time already spent (or planned), and the MFU it implies."""
    from aifactory.core.errors import SpecError
    from aifactory.plan.energy import Facility, footprint
    from aifactory.plan.train import implied_mfu

    g = _catalog(catalog).gpu(gpu)
    if gpu_hours is None:
        if gpus is None or days is None:
            raise SpecError("gpu-hours", "give --gpu-hours, or --gpus and --days")
        if gpus < 1 or not days > 0:
            raise SpecError("gpus" if gpus < 1 else "days", f"must be > 0, got {gpus if gpus < 1 else days}")
        gpu_hours = gpus * days * 24
    fp = footprint(gpu_hours, power_w or g.power_w, Facility(pue, grid, usd_per_gpu_hour, usd_per_kwh))
    rows = [("GPU", g.name), ("GPU-hours", f"{gpu_hours:,.0f}"), *_footprint_rows(fp)]
    data: dict[str, Any] = {
        "gpu": g.name,
        "gpu_hours": gpu_hours,
        "power_w": fp.power_w,
        "pue": pue,
        "it_mwh": fp.it_kwh / 1000,
        "facility_mwh": fp.facility_kwh / 1000,
        "grid_g_per_kwh": grid,
        "tco2e": fp.tco2e,
        "cost_usd": fp.cost_usd,
    }
    if params is not None and tokens is not None:
        data["implied_mfu"] = implied_mfu(params, tokens, gpu_hours, g.peak_tflops("bf16"))
        rows.append(("implied MFU", f"{data['implied_mfu']:.1%} of {g.peak_tflops('bf16'):g} TFLOPS"))
    _emit("energy and carbon", rows, data, as_json)


def _law_rows(pt: Any) -> list[tuple[str, str]]:
    return [
        ("parameters N", f"{pt.params:.3e}"),
        ("tokens D", f"{pt.tokens:.3e} ({pt.tokens_per_param:.1f} per parameter)"),
        ("training compute", f"{pt.train_flops:.3e} FLOP"),
        ("predicted loss", f"{pt.loss:.4f} nats/token"),
    ]


def _law_data(pt: Any) -> dict[str, float]:
    return {
        "params": pt.params,
        "tokens": pt.tokens,
        "tokens_per_param": pt.tokens_per_param,
        "train_flops": pt.train_flops,
        "inference_flops": pt.inference_flops,
        "lifetime_flops": pt.lifetime_flops,
        "loss": pt.loss,
    }


@app.command("optimal")
def optimal(
    flops: float = typer.Option(..., help="Training compute budget in FLOP (e.g. 5.76e23)."),
    fit: str = FIT_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Compute-optimal parameters, tokens and predicted loss for a compute budget (C = 6ND)."""
    from aifactory.plan.scaling import get_fit
    from aifactory.plan.scaling import optimal as solve

    law = get_fit(fit)
    pt = solve(law, flops)
    _emit(
        f"compute-optimal at {flops:.3g} FLOP",
        [("fit", f"{law.name}: {law.source}"), *_law_rows(pt)],
        {"fit": law.name, **_law_data(pt)},
        as_json,
    )


@app.command("budget")
def budget(
    target_loss: float = typer.Option(..., help="Loss to reach, nats/token."),
    fit: str = FIT_OPT,
    inference_tokens: float = typer.Option(0.0, help="Tokens served over the model's life (inference-aware)."),
    as_json: bool = JSON_OPT,
) -> None:
    """The least compute that reaches a loss; with --inference-tokens, the least lifetime compute."""
    from aifactory.plan.scaling import budget as solve
    from aifactory.plan.scaling import get_fit, inference_aware

    law = get_fit(fit)
    train_opt = solve(law, target_loss)
    rows = _law_rows(train_opt)
    data: dict[str, Any] = {"fit": law.name, "training_optimal": _law_data(train_opt)}
    if inference_tokens:
        aware = inference_aware(law, target_loss, inference_tokens)
        naive_lifetime = train_opt.train_flops + 2 * train_opt.params * inference_tokens
        rows += [("-- inference-aware --", f"serving {inference_tokens:.3g} tokens"), *_law_rows(aware)]
        rows += [("lifetime compute", f"{aware.lifetime_flops:.3e} FLOP vs {naive_lifetime:.3e} training-optimal")]
        data["inference_aware"] = _law_data(aware)
        data["training_optimal"]["lifetime_flops"] = naive_lifetime
    _emit(f"compute to reach loss {target_loss} ({law.name})", rows, data, as_json)


@app.command("fit")
def fit_runs(
    runs: Path = typer.Argument(..., help="CSV with a header naming compute (or flops) and loss columns."),
    plot: Path | None = typer.Option(None, help="Write the fit as a PNG here."),
    extrapolate: float | None = typer.Option(None, help="Predict the loss at this compute (default 100x the largest)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Fit L(C) = E + A (C/C0)^-alpha to your runs, with standard errors and a 95 % band; extrapolate and plot."""
    from aifactory.plan.fit import fit_power_law, plot_fit, read_runs_csv

    compute, loss = read_runs_csv(runs)
    f = fit_power_law(compute, loss)
    target = extrapolate if extrapolate is not None else 100 * max(compute)
    lo, hi = f.band(target)
    se = f.param_stderr
    if plot is not None:
        plot_fit(f, compute, loss, plot, target)
    rows = [
        ("law", f"L = {f.E:.4f} + {f.A:.4f} (C/{f.c0:.3g})^-{f.alpha:.4f}"),
        ("std errors", f"E {se['E']:.4f}, A {se['A']:.4f}, alpha {se['alpha']:.4f}"),
        ("R^2", f"{f.r2:.5f} over {f.points} runs"),
        (f"loss at {target:.3g} FLOP", f"{f.predict(target):.4f} (95 % band {lo:.4f} to {hi:.4f})"),
    ] + ([("plot", str(plot))] if plot else [])
    data = {
        "E": f.E,
        "A": f.A,
        "alpha": f.alpha,
        "c0": f.c0,
        "A_absolute": f.A_absolute,
        "stderr": se,
        "r2": f.r2,
        "points": f.points,
        "extrapolate_to": target,
        "predicted_loss": f.predict(target),
        "band95": [lo, hi],
        "plot": str(plot) if plot else None,
    }
    _emit("power-law fit", rows, data, as_json)


@app.command("sweep")
def sweep(
    widths: str = typer.Option("32,40,48,56,64,80", help="Comma-separated model widths (one run each)."),
    tokens_per_param: float = typer.Option(10.0, help="Training characters per parameter."),
    runner: str = typer.Option(
        "local", help="Where runs execute: local (subprocesses) or floor (jobs of a factory of its own under --out)."
    ),
    out: Path = typer.Option(Path("plan-sweep"), help="Directory for run results, runs.csv and fit.png."),
    as_json: bool = JSON_OPT,
) -> None:
    """Train tiny character-level transformers of growing width on the stdlib's Python docs, then fit L(C)."""
    from dataclasses import asdict

    from aifactory.core.errors import SpecError
    from aifactory.plan.fit import plot_fit
    from aifactory.plan.sweep import get_runner, run_sweep, sweep_jobs, write_csv

    try:
        sizes = [int(w) for w in widths.split(",")]
    except ValueError:
        raise SpecError("widths", f"must be comma-separated integers, got {widths!r}") from None
    jobs = sweep_jobs(sizes, tokens_per_param=tokens_per_param)
    outcome = run_sweep(jobs, get_runner(runner), out / "runs", _sweep_progress(len(jobs)))
    compute = [r.compute for r in outcome.results]
    write_csv(outcome.results, out / "runs.csv")
    plot_fit(outcome.fit, compute, [r.val_loss for r in outcome.results], out / "fit.png", 100 * max(compute))
    f = outcome.fit
    rows = [(r.name, f"N={r.params:,} D={r.tokens:,} C={r.compute:.3e} loss={r.val_loss:.4f}") for r in outcome.results]
    rows += [("fit", f"L = {f.E:.4f} + {f.A:.4f} (C/{f.c0:.3g})^-{f.alpha:.4f}, R^2 {f.r2:.5f}")]
    if outcome.holdout_error_pct is not None:
        rows.append(("largest run held out", f"predicted within {outcome.holdout_error_pct:.2f} %"))
    rows.append(("written", f"{out / 'runs.csv'}, {out / 'fit.png'}"))
    data = {
        "runs": [asdict(r) for r in outcome.results],
        "fit_exponent": f.alpha,
        "fit_E": f.E,
        "fit_r2": f.r2,
        "holdout_error_pct": outcome.holdout_error_pct,
        "sizes": len(outcome.results),
        "csv": str(out / "runs.csv"),
        "plot": str(out / "fit.png"),
    }
    _emit("scaling sweep", rows, data, as_json)


def _sweep_progress(total: int) -> Any:
    """One line on stderr per finished run (stdout stays the table or the JSON)."""
    import sys
    import time

    started, finished = time.monotonic(), 0
    print(f"sweep: {total} runs, one after another; each line is one finished", file=sys.stderr, flush=True)

    def done(result: Any) -> None:
        nonlocal finished
        finished += 1
        took = time.monotonic() - started
        print(
            f"[{finished}/{total}] {result.name}: loss {result.val_loss:.4f} in {result.seconds:.1f} s "
            f"({took:.0f} s so far)",
            file=sys.stderr,
            flush=True,
        )

    return done


@app.command("inference")
def inference(
    params: float = typer.Option(..., help="Model parameters N."),
    gpu: str = typer.Option(..., help="GPU name."),
    rate: float = typer.Option(1.0, help="Requests per second to serve."),
    prompt_tokens: int = typer.Option(1024, help="Prompt tokens per request."),
    output_tokens: int = typer.Option(256, help="Generated tokens per request."),
    ttft: float = typer.Option(1.0, help="Time-to-first-token target, seconds."),
    tpot: float = typer.Option(0.05, help="Time-per-output-token target, seconds."),
    precision: str = typer.Option("bf16", help="Weights and compute precision: fp8, bf16, fp16 or fp32."),
    kv_heads: int | None = typer.Option(None, help="KV heads (grouped-query attention); default one per head."),
    layers: int | None = LAYERS_OPT,
    hidden: int | None = HIDDEN_OPT,
    heads: int | None = HEADS_OPT,
    catalog: Path | None = CATALOG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Roofline throughput per GPU (prefill compute-bound, decode bandwidth-bound) and GPUs to serve a rate."""
    from dataclasses import asdict

    from aifactory.plan.inference import InferenceSpec, plan_inference

    shape = _shape(layers, hidden, heads)
    spec = InferenceSpec(params, precision, kv_heads, prompt_tokens, output_tokens, rate, ttft, tpot, shape)
    p = plan_inference(spec, _catalog(catalog).gpu(gpu))
    rows = [
        ("replica", f"{p.tp} x {p.gpu} (tensor parallel), batch {p.batch} (limited by {p.bound})"),
        ("prefill", f"{p.prefill_tokens_s_per_gpu:,.0f} tokens/s per GPU; TTFT {p.ttft_s * 1000:.0f} ms"),
        ("decode", f"{p.decode_tokens_s_per_gpu:,.0f} tokens/s per GPU; TPOT {p.tpot_s * 1000:.1f} ms"),
        ("memory per GPU", f"weights {p.weights_gb_per_gpu:.1f} GB; KV cache {p.kv_gb_per_request:.3f} GB/request"),
        ("replica capacity", f"{p.replica_rps:.2f} requests/s"),
        ("to serve", f"{rate:g} requests/s: {p.replicas} replicas = {p.gpus} GPUs"),
    ]
    _emit("inference plan", rows, asdict(p), as_json)
