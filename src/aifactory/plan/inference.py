"""Inference plan for a dense transformer: a roofline per GPU and the GPUs a request rate needs.

Prefill is bound by compute: 2 N FLOPs per prompt token. Decode is bound by memory bandwidth: every step
reads the weights (N x bytes/param) plus the KV cache of the whole batch, and emits one token per sequence;
it becomes compute-bound once 2 N B FLOPs outlast that read. KV cache per token = 2 (K and V) x layers x
kv_heads x head_dim x bytes. A replica is `tp` GPUs (tensor parallel) running continuous batching at the
largest batch that fits in memory and meets the time-per-output-token target; prefill time is charged to
the same replica (requests take turns; chunked prefill hides it from TPOT, which this model ignores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aifactory.core.errors import SpecError
from aifactory.plan.catalog import Gpu
from aifactory.plan.memory import OVERHEAD_GB, Shape, shape_for

BYTES_PER_PARAM = {"fp8": 1, "bf16": 2, "fp16": 2, "fp32": 4}
COMPUTE_EFFICIENCY = 0.5  # assumed fraction of dense peak reached in prefill matmuls
BANDWIDTH_EFFICIENCY = 0.8  # assumed fraction of datasheet HBM bandwidth reached streaming weights
TP_CHOICES = (1, 2, 4, 8)


@dataclass(frozen=True, slots=True)
class InferenceSpec:
    """A model, its traffic (requests/s, tokens per request) and latency targets (seconds)."""

    params: float
    precision: str = "bf16"
    kv_heads: int | None = None  # None: multi-head attention, as many KV heads as query heads
    prompt_tokens: int = 1024
    output_tokens: int = 256
    rate_rps: float = 1.0
    ttft_s: float = 1.0
    tpot_s: float = 0.05
    shape: Shape | None = None

    def __post_init__(self) -> None:
        if not self.params > 0:
            raise SpecError("params", f"must be > 0, got {self.params}")
        if self.precision not in BYTES_PER_PARAM:
            raise SpecError("precision", f"must be one of {', '.join(BYTES_PER_PARAM)}, got {self.precision!r}")
        for name in ("prompt_tokens", "output_tokens"):
            if getattr(self, name) < 1:
                raise SpecError(name.replace("_", "-"), f"must be >= 1, got {getattr(self, name)}")
        for name in ("rate_rps", "ttft_s", "tpot_s"):
            if not getattr(self, name) > 0:
                raise SpecError(name.replace("_", "-"), f"must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class InferencePlan:
    """Per-GPU rates in tokens/s, memory in GB, latencies in seconds, capacity in requests/s per replica."""

    gpu: str
    tp: int
    batch: int
    prefill_tokens_s_per_gpu: float
    decode_tokens_s_per_gpu: float
    ttft_s: float
    tpot_s: float
    weights_gb_per_gpu: float
    kv_gb_per_request: float
    replica_rps: float
    replicas: int
    gpus: int
    bound: str  # what limits the batch: "memory", "tpot" or "compute"


def kv_bytes_per_token(shape: Shape, kv_heads: int, kv_bytes: int) -> float:
    return 2.0 * shape.layers * kv_heads * (shape.hidden / shape.heads) * kv_bytes


def _replica(spec: InferenceSpec, gpu: Gpu, tp: int, shape: Shape) -> InferencePlan | None:
    """The best batch on one tp-GPU replica, or None if the targets cannot be met at this tp."""
    nbytes = BYTES_PER_PARAM[spec.precision]
    peak = gpu.peak_tflops(spec.precision) * 1e12 * COMPUTE_EFFICIENCY * tp  # FLOP/s of the replica
    bw = gpu.memory_bw_gbs * 1e9 * BANDWIDTH_EFFICIENCY * tp  # bytes/s of the replica
    weights = spec.params * nbytes  # bytes
    kv_tok = kv_bytes_per_token(shape, spec.kv_heads or shape.heads, min(nbytes, 2))
    kv_req = kv_tok * (spec.prompt_tokens + spec.output_tokens)  # bytes of a finished request's cache
    ctx = spec.prompt_tokens + spec.output_tokens / 2  # mean context while decoding
    free = (gpu.memory_gb - OVERHEAD_GB) * 1e9 * tp - weights
    ttft = 2 * spec.params * spec.prompt_tokens / peak
    limits = {
        "memory": free / kv_req,
        "tpot": (spec.tpot_s * bw - weights) / (ctx * kv_tok),
        "compute": spec.tpot_s * peak / (2 * spec.params),
    }
    bound = min(limits, key=lambda k: limits[k])
    batch = math.floor(limits[bound])
    if batch < 1 or ttft > spec.ttft_s:
        return None
    step = max((weights + batch * ctx * kv_tok) / bw, 2 * spec.params * batch / peak)  # s per decode step
    replica_rps = 1.0 / (ttft + spec.output_tokens * step / batch)
    replicas = math.ceil(spec.rate_rps / replica_rps)
    return InferencePlan(
        gpu=gpu.name,
        tp=tp,
        batch=batch,
        prefill_tokens_s_per_gpu=peak / (2 * spec.params) / tp,
        decode_tokens_s_per_gpu=batch / step / tp,
        ttft_s=ttft,
        tpot_s=step,
        weights_gb_per_gpu=weights / tp / 1e9,
        kv_gb_per_request=kv_req / 1e9,
        replica_rps=replica_rps,
        replicas=replicas,
        gpus=replicas * tp,
        bound=bound,
    )


def plan_inference(spec: InferenceSpec, gpu: Gpu) -> InferencePlan:
    """The tensor-parallel degree and batch that serve `spec.rate_rps` on the fewest GPUs."""
    shape = spec.shape or shape_for(spec.params)
    kv_heads = spec.kv_heads or shape.heads
    if kv_heads < 1 or shape.heads % kv_heads:
        raise SpecError("kv-heads", f"must divide the {shape.heads} attention heads, got {kv_heads}")
    plans = [p for tp in TP_CHOICES if (p := _replica(spec, gpu, tp, shape)) is not None]
    if not plans:
        raise SpecError(
            "targets",
            f"{spec.params:.3g} parameters on {gpu.name} cannot meet TTFT {spec.ttft_s} s and TPOT "
            f"{spec.tpot_s} s at any tensor-parallel degree up to {TP_CHOICES[-1]}",
        )
    return min(plans, key=lambda p: (p.gpus, p.tp))
