"""Scaling laws: the Chinchilla optimum with the Epoch constants, budget, inference-aware optimum."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.core.errors import SpecError, UnknownName
from aifactory.plan.scaling import FITS, budget, get_fit, inference_aware, optimal


def test_fits_carry_the_published_constants(published: dict[str, Any]) -> None:
    for ours, theirs in (("chinchilla", "chinchilla"), ("epoch", "epoch-replication")):
        ref = published["scaling"][theirs]
        law = FITS[ours]
        assert (law.E, law.A, law.B, law.alpha, law.beta) == (ref["E"], ref["A"], ref["B"], ref["alpha"], ref["beta"])


def test_chinchilla_optimum_with_epoch_constants(published: dict[str, Any]) -> None:
    example = published["scaling"]["chinchilla"]["compute_optimal_example"]
    pt = optimal(get_fit("epoch"), example["flops"])
    assert pt.params == pytest.approx(example["params"], rel=0.10)
    assert pt.tokens == pytest.approx(example["tokens"], rel=0.10)
    assert 6 * pt.params * pt.tokens == pytest.approx(example["flops"])
    assert pt.params == pytest.approx(72e9, rel=0.02) and pt.tokens == pytest.approx(1.33e12, rel=0.02)


def test_optimum_is_a_minimum_along_the_iso_compute_line() -> None:
    law = get_fit("epoch")
    pt = optimal(law, 1e22)
    for factor in (0.8, 1.25):
        n = pt.params * factor
        assert law.loss(n, 1e22 / (6 * n)) > pt.loss


def test_budget_inverts_optimal() -> None:
    for name in FITS:
        law = get_fit(name)
        pt = optimal(law, 3e23)
        back = budget(law, pt.loss)
        assert back.train_flops == pytest.approx(3e23, rel=1e-6)
        assert back.params == pytest.approx(pt.params, rel=1e-6)


def test_inference_aware_trains_a_smaller_model_longer_for_less_lifetime_compute() -> None:
    law = get_fit("epoch")
    target, served = 2.0, 2e13
    train_opt = budget(law, target)
    aware = inference_aware(law, target, served)
    assert aware.loss == pytest.approx(target, abs=1e-9)
    assert aware.params < train_opt.params and aware.tokens > train_opt.tokens
    assert aware.train_flops > train_opt.train_flops
    naive = train_opt.train_flops + 2 * train_opt.params * served
    assert aware.lifetime_flops < naive
    # a stationary point: nudging N either way costs more lifetime compute
    for factor in (0.9, 1.1):
        n = aware.params * factor
        d = (law.B / (target - law.E - law.A / n**law.alpha)) ** (1 / law.beta)
        assert 6 * n * d + 2 * n * served > aware.lifetime_flops


def test_bad_scaling_input() -> None:
    with pytest.raises(SpecError, match="flops"):
        optimal(get_fit("epoch"), -1)
    with pytest.raises(SpecError, match="target-loss"):
        budget(get_fit("epoch"), 1.5)
    with pytest.raises(UnknownName, match="did you mean 'epoch'"):
        get_fit("epohc")


@settings(max_examples=60, deadline=None)
@given(log_c=st.floats(min_value=18, max_value=27), fit=st.sampled_from(sorted(FITS)))
def test_optimum_and_budget_agree_at_any_compute(log_c: float, fit: str) -> None:
    law = get_fit(fit)
    pt = optimal(law, 10**log_c)
    assert 6 * pt.params * pt.tokens == pytest.approx(10**log_c, rel=1e-9)
    assert budget(law, pt.loss).train_flops == pytest.approx(10**log_c, rel=1e-6)
    for factor in (0.97, 1.03):  # no neighbour on the iso-compute line does better
        n = pt.params * factor
        assert law.loss(n, 10**log_c / (6 * n)) >= pt.loss
