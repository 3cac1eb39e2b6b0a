"""Training memory per GPU: weights, gradients, optimizer state and activations.

Mixed-precision Adam keeps 16 bytes per parameter: 2 (BF16 weights) + 2 (BF16 gradients) + 12 (FP32
master weights, momentum and variance) (Rajbhandari et al. 2020, ZeRO, section 3.1). Tensor (tp) and
pipeline (pp) parallelism split the parameters over tp x pp GPUs; ZeRO stage 1/2/3 further shards the
optimizer state / + gradients / + weights over the data-parallel (dp) degree.

Activations per transformer layer and micro-batch, in bytes, with sequence parallelism (Korthikanti et
al. 2022, "Reducing Activation Recomputation in Large Transformer Models", Table 2):
    none:      s*b*h*(34 + 5*a*s/h) / tp
    selective: s*b*h*34 / tp            (attention recomputed; the Megatron default)
    full:      s*b*h*2 / tp             (only each layer's input kept)
With 1F1B pipelining the first stage keeps pp micro-batches of its layers/pp layers in flight, so it
holds about `layers` layers' worth whatever pp is.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from aifactory.core.errors import SpecError

BYTES_WEIGHTS = 2  # BF16
BYTES_GRADS = 2  # BF16
BYTES_OPTIMIZER = 12  # FP32 master copy + Adam m + v
ACTIVATION_FACTOR = {"selective": 34.0, "full": 2.0}
RECOMPUTE = ("none", "selective", "full")
OVERHEAD_GB = 2.0  # CUDA context, NCCL buffers, allocator fragmentation: an assumed floor per GPU
GB = 1e9


@dataclass(frozen=True, slots=True)
class Shape:
    """A dense decoder-only transformer: layers, hidden width, attention heads."""

    layers: int
    hidden: int
    heads: int

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads"):
            if getattr(self, name) < 1:
                raise SpecError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise SpecError("heads", f"must divide hidden={self.hidden}, got {self.heads}")


def shape_for(params: float) -> Shape:
    """A plausible shape for `params` parameters: params ~ 12 * layers * hidden^2 at hidden/layers ~ 128.

    hidden/layers is 128 for GPT-3 175B (12288/96) and about 100 for Llama 2 70B (8192/80). Heads are 128
    wide, and a multiple of 8 from 1024 wide up so that tensor parallelism up to 8 splits them.
    """
    target = (params * 128 / 12) ** (1 / 3)
    if target >= 1024:
        heads = 8 * max(1, round(target / 1024))
        hidden = 128 * heads
    else:
        hidden = max(64, 64 * round(target / 64))
        heads = max(1, hidden // 64)
    layers = max(1, round(params / (12 * hidden * hidden)))
    return Shape(layers=layers, hidden=hidden, heads=heads)


@dataclass(frozen=True, slots=True)
class Parallel:
    """How a job is split: tensor, pipeline and data parallel degrees, ZeRO stage, micro-batch and sequence."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    zero: int = 1
    micro_batch: int = 1
    seq_len: int = 4096
    recompute: str = "selective"

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "micro_batch", "seq_len"):
            if getattr(self, name) < 1:
                raise SpecError(name.replace("_", "-"), f"must be >= 1, got {getattr(self, name)}")
        if self.zero not in (0, 1, 2, 3):
            raise SpecError("zero", f"ZeRO stage must be 0, 1, 2 or 3, got {self.zero}")
        if self.recompute not in RECOMPUTE:
            raise SpecError("recompute", f"must be one of {', '.join(RECOMPUTE)}, got {self.recompute!r}")

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp


@dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    """Per-GPU memory in GB (1e9 bytes) against the GPU's capacity."""

    weights_gb: float
    grads_gb: float
    optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    capacity_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.grads_gb + self.optimizer_gb + self.activations_gb + self.overhead_gb

    @property
    def fits(self) -> bool:
        return self.total_gb <= self.capacity_gb

    def describe(self) -> str:
        return (
            f"{self.total_gb:.1f} GB per GPU needed (weights {self.weights_gb:.1f}, gradients {self.grads_gb:.1f}, "
            f"optimizer {self.optimizer_gb:.1f}, activations {self.activations_gb:.1f}, overhead "
            f"{self.overhead_gb:.1f}) > {self.capacity_gb:g} GB"
        )


def activation_bytes_per_layer(shape: Shape, par: Parallel) -> float:
    """Bytes of one layer's activations for one micro-batch on one GPU (Korthikanti et al. 2022)."""
    sbh = par.seq_len * par.micro_batch * shape.hidden
    if par.recompute == "none":
        factor = 34.0 + 5.0 * shape.heads * par.seq_len / shape.hidden
    else:
        factor = ACTIVATION_FACTOR[par.recompute]
    return sbh * factor / par.tp


def training_memory(params: float, shape: Shape, par: Parallel, capacity_gb: float) -> MemoryBreakdown:
    """Memory per GPU of training `params` parameters laid out as `par`."""
    if not params > 0:
        raise SpecError("params", f"must be > 0, got {params}")
    local = params / (par.tp * par.pp)  # parameters each GPU owns before ZeRO sharding
    weights = local * BYTES_WEIGHTS / (par.dp if par.zero >= 3 else 1)
    grads = local * BYTES_GRADS / (par.dp if par.zero >= 2 else 1)
    optimizer = local * BYTES_OPTIMIZER / (par.dp if par.zero >= 1 else 1)
    activations = shape.layers * activation_bytes_per_layer(shape, par)
    return MemoryBreakdown(weights / GB, grads / GB, optimizer / GB, activations / GB, OVERHEAD_GB, capacity_gb)


def check_layout(gpus: int, shape: Shape, tp: int, pp: int) -> int:
    """The data-parallel degree of `gpus` split tp x pp; raises if they do not divide."""
    if gpus % (tp * pp):
        raise SpecError("gpus", f"{gpus} GPUs do not split into tp={tp} x pp={pp} groups")
    if pp > shape.layers:
        raise SpecError("pp", f"{pp} pipeline stages for {shape.layers} layers")
    return gpus // (tp * pp)


@dataclass(frozen=True, slots=True)
class Layout:
    """A layout that fits, how many of the GPUs asked for it leaves idle, and the nearest counts it divides."""

    parallel: Parallel
    idle: int  # GPUs asked for that the layout cannot use (0: it divides them)
    below: int  # the nearest GPU count at or below the one asked for that this group size divides
    above: int  # ... and above it


MAX_TP, MAX_PP = 8, 64  # tensor parallelism stays within an 8-GPU node; 64 pipeline stages at most


def auto_layout(params: float, gpus: int, shape: Shape, base: Parallel, capacity_gb: float) -> Layout:
    """The smallest model-parallel group (tp within a node first, then pp) whose memory fits.

    A group that divides `gpus` is taken first. When none that fits does (10,000 GPUs and a
    group of 128), the fitting group that leaves the fewest GPUs idle is used, with dp the
    groups that fit in `gpus`; `below`/`above` name the nearest counts it divides. The error,
    where one remains, says why: no group fits in memory even at tp=8 x pp=64, or there are
    fewer GPUs than the smallest group that fits.
    """
    candidates = sorted(product((1, 2, 4, 8), (1, 2, 4, 8, 16, 32, 64)), key=lambda c: (c[0] * c[1], c[1]))
    fitting: list[Parallel] = []
    last: MemoryBreakdown | None = None
    for tp, pp in candidates:
        group = tp * pp
        if pp > shape.layers or group > gpus:
            continue
        dp = gpus // group
        par = Parallel(tp, pp, dp, base.zero, base.micro_batch, base.seq_len, base.recompute)
        last = training_memory(params, shape, par, capacity_gb)
        if last.fits:
            if gpus % group == 0:
                return Layout(par, 0, gpus, gpus)
            fitting.append(par)
    if fitting:
        best = min(fitting, key=lambda p: (gpus - p.gpus, p.tp * p.pp))
        group = best.tp * best.pp
        return Layout(best, gpus - best.gpus, best.gpus, best.gpus + group)
    if last is None:
        raise SpecError("gpus", f"{gpus} GPUs are fewer than any model-parallel group for {shape.layers} layers")
    deepest = max(pp for pp in (1, 2, 4, 8, 16, 32, 64) if pp <= shape.layers)
    biggest = Parallel(MAX_TP, deepest, 1, base.zero, base.micro_batch, base.seq_len, base.recompute)
    at_most = training_memory(params, shape, biggest, capacity_gb)
    if at_most.fits:
        need = next(
            tp * pp
            for tp, pp in candidates
            if pp <= shape.layers
            and training_memory(
                params,
                shape,
                Parallel(tp, pp, 1, base.zero, base.micro_batch, base.seq_len, base.recompute),
                capacity_gb,
            ).fits
        )
        raise SpecError("gpus", f"{gpus} GPUs are fewer than the smallest model-parallel group that fits ({need} GPUs)")
    raise SpecError(
        "memory",
        f"the model does not fit in GPU memory even split tp={MAX_TP} x pp={biggest.pp}: {at_most.describe()}; "
        "try --zero 3 or --recompute full",
    )
