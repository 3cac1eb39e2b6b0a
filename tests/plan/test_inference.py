"""The inference roofline: decode bound by bandwidth, prefill by compute; GPUs for a request rate."""

from __future__ import annotations

import pytest

from aifactory.core.errors import SpecError
from aifactory.plan.catalog import Catalog
from aifactory.plan.inference import (
    BANDWIDTH_EFFICIENCY,
    COMPUTE_EFFICIENCY,
    InferenceSpec,
    kv_bytes_per_token,
    plan_inference,
)
from aifactory.plan.memory import Shape

LLAMA2_7B = Shape(layers=32, hidden=4096, heads=32)


def test_kv_cache_of_llama2_7b() -> None:
    # 2 (K, V) x 32 layers x 4096 x 2 bytes = 512 KiB per token (the figure quoted for Llama 2 7B in FP16)
    assert kv_bytes_per_token(LLAMA2_7B, 32, 2) == 2 * 32 * 4096 * 2 == 524288


def test_long_context_decode_is_bandwidth_bound(catalog: Catalog) -> None:
    a100 = catalog.gpu("A100-80GB")
    spec = InferenceSpec(7e9, prompt_tokens=4096, output_tokens=512, tpot_s=0.05, shape=LLAMA2_7B)
    plan = plan_inference(spec, a100)
    kv = 524288 * (4096 + 256)  # bytes of cache read per sequence per step, at the mean context
    assert plan.tp == 1 and plan.bound == "memory"
    assert plan.batch == int((78e9 - 14e9) / (524288 * 4608))  # free memory / one finished request's cache
    assert plan.tpot_s == pytest.approx((14e9 + plan.batch * kv) / (2039e9 * BANDWIDTH_EFFICIENCY))
    assert plan.decode_tokens_s_per_gpu == pytest.approx(plan.batch / plan.tpot_s)
    assert plan.ttft_s == pytest.approx(2 * 7e9 * 4096 / (312e12 * COMPUTE_EFFICIENCY))
    assert plan.prefill_tokens_s_per_gpu == pytest.approx(312e12 * COMPUTE_EFFICIENCY / 14e9)


def test_gpus_grow_with_rate_and_fp8_needs_fewer(catalog: Catalog) -> None:
    h100 = catalog.gpu("H100")
    base = InferenceSpec(70e9, kv_heads=8, rate_rps=5)
    low = plan_inference(base, h100)
    high = plan_inference(InferenceSpec(70e9, kv_heads=8, rate_rps=50), h100)
    fp8 = plan_inference(InferenceSpec(70e9, kv_heads=8, rate_rps=50, precision="fp8"), h100)
    assert low.tp >= 2  # 140 GB of BF16 weights do not fit one 80 GB GPU
    assert high.gpus > low.gpus and fp8.gpus < high.gpus
    assert high.replicas * high.replica_rps >= 50
    assert high.ttft_s <= base.ttft_s and high.tpot_s <= base.tpot_s


def test_targets_that_cannot_be_met(catalog: Catalog) -> None:
    with pytest.raises(SpecError, match="targets"):
        plan_inference(InferenceSpec(70e9, tpot_s=0.001), catalog.gpu("A100"))
    with pytest.raises(SpecError, match="kv-heads"):
        plan_inference(InferenceSpec(7e9, kv_heads=5, shape=LLAMA2_7B), catalog.gpu("A100"))
    with pytest.raises(SpecError, match="rate-rps"):
        InferenceSpec(7e9, rate_rps=-1)
