"""Training plan: FLOPs, GPU-hours, wall-clock, energy, carbon, cost and memory of one training run.

Training FLOPs = 6 * N * D (forward 2ND + backward 4ND; Kaplan et al. 2020, section 2.1), or the
FLOPs given. GPU time = FLOPs / (peak * MFU); goodput (the fraction of held GPU time that advances
training, the rest lost to restarts and failures) stretches it to the GPU-hours actually held.
When the GPUs asked for do not divide into a layout that fits, the plan runs on the largest count
that does and says how many stay idle and what the nearest count above would take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aifactory.core.errors import SpecError
from aifactory.plan.catalog import Catalog, Gpu
from aifactory.plan.energy import Facility, Footprint, footprint
from aifactory.plan.memory import Layout, MemoryBreakdown, Parallel, Shape, auto_layout, check_layout, shape_for
from aifactory.plan.memory import training_memory as _memory

# Llama 3 405B: "higher than 90 % effective training time" on 16k H100 (Dubey et al. 2024, section 3.3.4).
DEFAULT_GOODPUT = 0.9
GOODPUT_SOURCE = "Llama 3 405B: higher than 90 % effective training time on 16k H100 (Dubey et al. 2024, 3.3.4)"


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """What the user asks: N parameters on D tokens on `gpus` x `gpu`; None = the documented default."""

    params: float | None
    tokens: float | None
    gpu: str
    gpus: int
    mfu: float | None = None
    goodput: float = DEFAULT_GOODPUT
    precision: str = "bf16"
    power_w: float | None = None
    tp: int | None = None
    pp: int | None = None
    zero: int = 1
    micro_batch: int = 1
    seq_len: int = 4096
    recompute: str = "selective"
    shape: Shape | None = None
    flops: float | None = None  # instead of 6 x params x tokens

    def __post_init__(self) -> None:
        for name in ("params", "tokens", "flops"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise SpecError(name, f"must be a number > 0, got {value}")
        if self.flops is None and (self.params is None or self.tokens is None):
            raise SpecError("flops", "give --params and --tokens (6ND FLOPs), or --flops")
        if self.flops is not None and self.tokens is not None and self.params is not None:
            raise SpecError("flops", "give --flops or --tokens, not both: with --params they fix the FLOPs twice")
        if self.gpus < 1:
            raise SpecError("gpus", f"must be >= 1, got {self.gpus}")
        if self.mfu is not None and not 0 < self.mfu <= 1:
            raise SpecError("mfu", f"must be a fraction in (0, 1], got {self.mfu}")
        if not 0 < self.goodput <= 1:
            raise SpecError("goodput", f"must be a fraction in (0, 1], got {self.goodput}")
        if self.power_w is not None and not self.power_w > 0:
            raise SpecError("power-w", f"must be > 0 W, got {self.power_w}")


@dataclass(frozen=True, slots=True)
class TrainPlan:
    """The answer. FLOPs in FLOP, peak in TFLOPS per GPU, times in hours and days."""

    spec: TrainSpec
    gpu: Gpu
    flops: float
    peak_tflops: float
    mfu: float
    mfu_source: str
    gpu_hours: float
    days: float
    footprint: Footprint
    parallel: Parallel | None  # None without --params: no memory, no layout
    shape: Shape | None
    memory: MemoryBreakdown | None
    idle_gpus: int = 0  # asked for, but no layout that fits can use them
    gpus_used: int = 0
    nearest_above: int = 0  # the nearest GPU count above that the layout divides (0: it divides already)
    days_above: float = 0.0  # wall-clock days there


def training_flops(params: float, tokens: float) -> float:
    """6 N D: FLOPs to train N parameters on D tokens."""
    return 6.0 * params * tokens


def wall_seconds(flops: float, gpu: Gpu, gpus: int, mfu: float, goodput: float = 1.0, precision: str = "bf16") -> float:
    """Wall-clock seconds of `flops` on `gpus` x `gpu` at `mfu` (what the twin needs for a job's duration)."""
    if gpus < 1:
        raise SpecError("gpus", f"must be >= 1, got {gpus}")
    if not 0 < mfu <= 1 or not 0 < goodput <= 1:
        raise SpecError("mfu" if not 0 < mfu <= 1 else "goodput", "must be a fraction in (0, 1]")
    return flops / (gpus * gpu.peak_tflops(precision) * 1e12 * mfu * goodput)


def implied_mfu(params: float, tokens: float, gpu_hours: float, peak_tflops: float) -> float:
    """The MFU a run must have had to do 6ND FLOPs in `gpu_hours` on GPUs of `peak_tflops`."""
    if not gpu_hours > 0:
        raise SpecError("gpu-hours", f"must be > 0, got {gpu_hours}")
    return training_flops(params, tokens) / (gpu_hours * 3600.0 * peak_tflops * 1e12)


def achieved_tflops(params: float, tokens: float, gpus: int, seconds: float, full_recompute: bool = False) -> float:
    """Model TFLOPS per GPU of a step over `tokens` (6ND); full activation recomputation adds a forward (8ND)."""
    if gpus < 1 or not seconds > 0:
        raise SpecError("gpus" if gpus < 1 else "seconds", "must be > 0")
    return (8.0 if full_recompute else 6.0) * params * tokens / (gpus * seconds) / 1e12


def _layout(spec: TrainSpec, params: float, shape: Shape, capacity_gb: float) -> tuple[Layout, MemoryBreakdown]:
    base = Parallel(zero=spec.zero, micro_batch=spec.micro_batch, seq_len=spec.seq_len, recompute=spec.recompute)
    if spec.tp is None and spec.pp is None:
        layout = auto_layout(params, spec.gpus, shape, base, capacity_gb)
        par = layout.parallel
    else:
        tp, pp = spec.tp or 1, spec.pp or 1
        dp = check_layout(spec.gpus, shape, tp, pp)
        par = Parallel(tp, pp, dp, spec.zero, spec.micro_batch, spec.seq_len, spec.recompute)
        layout = Layout(par, 0, spec.gpus, spec.gpus)
    mem = _memory(params, shape, par, capacity_gb)
    if not mem.fits:
        raise SpecError(
            "memory",
            f"plan does not fit: {mem.describe()} on {spec.gpu} at tp={par.tp} pp={par.pp} dp={par.dp} "
            f"zero={par.zero}; raise --tp/--pp, use --zero 3 or --recompute full",
        )
    return layout, mem


def plan_training(spec: TrainSpec, catalog: Catalog, facility: Facility) -> TrainPlan:
    """Cost, time, energy, carbon and memory of `spec`; raises SpecError (field `memory`) if it does not fit."""
    gpu = catalog.gpu(spec.gpu)
    peak = gpu.peak_tflops(spec.precision)
    if spec.mfu is not None:
        mfu, mfu_source = spec.mfu, "given"
    else:
        mfu = catalog.default_mfu(gpu)
        mfu_source = f"default for {gpu.generation}: {catalog.mfu_sources.get(gpu.generation, 'assumed')}"
    if spec.flops is not None:
        flops = spec.flops
    else:
        assert spec.params is not None and spec.tokens is not None  # checked by TrainSpec
        flops = training_flops(spec.params, spec.tokens)
    shape = par = mem = None
    used, above = spec.gpus, 0
    if spec.params is not None:
        shape = spec.shape or shape_for(spec.params)
        layout, mem = _layout(spec, spec.params, shape, gpu.memory_gb)
        par, used = layout.parallel, layout.parallel.gpus
        above = layout.above if layout.idle else 0
    seconds = wall_seconds(flops, gpu, used, mfu, spec.goodput, spec.precision)
    gpu_hours = seconds * used / 3600.0
    days_above = wall_seconds(flops, gpu, above, mfu, spec.goodput, spec.precision) / 86400 if above else 0.0
    fp = footprint(gpu_hours, spec.power_w or gpu.power_w, facility)
    return TrainPlan(
        spec, gpu, flops, peak, mfu, mfu_source, gpu_hours, seconds / 86400, fp, par, shape, mem,
        spec.gpus - used, used, above, days_above,
    )  # fmt: skip
