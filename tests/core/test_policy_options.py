"""Policy settings by name: each policy declares what it reads; operators set it as NAME=VALUE."""

from __future__ import annotations

from dataclasses import fields

import pytest

from aifactory.core import Cluster, Factory, JobSpec, Project, Submit
from aifactory.core.errors import SpecError, UnknownName
from aifactory.core.factory import FactorySettings
from aifactory.core.policies import POLICIES
from aifactory.core.policies.options import KINDS, apply_options, options_of


def test_every_policy_declares_options_the_settings_have() -> None:
    assert set(KINDS) <= {f.name for f in fields(FactorySettings)}
    for name in POLICIES:
        assert set(options_of(name)) <= set(KINDS), name
    assert "half_life_s" in options_of("fairshare") and options_of("backfill") == ("backfill_depth",)
    assert options_of("fifo") == ()


def test_options_are_set_by_name_and_typed() -> None:
    s = apply_options(
        FactorySettings(policy="fairshare"), ["half_life_s=3600", " history_weight = 0.5", "min_runtime_s=0"]
    )
    assert (s.half_life_s, s.history_weight, s.min_runtime_s) == (3600.0, 0.5, 0.0)
    las = apply_options(FactorySettings(policy="las"), ["las_thresholds_gpu_s=100,1000,5000"])
    assert las.las_thresholds_gpu_s == (100.0, 1000.0, 5000.0)
    assert apply_options(FactorySettings(policy="backfill"), ["backfill_depth=50"]).backfill_depth == 50


@pytest.mark.parametrize(
    ("policy", "given", "field", "words"),
    [
        ("fairshare", "half_lfe_s=3", None, "did you mean 'half_life_s'"),
        ("fifo", "half_life_s=3", "policy_opt", "policy fifo has no options"),
        ("fairshare", "half_life_s", "policy_opt", "NAME=VALUE"),
        ("fairshare", "half_life_s=soon", "policy_opt.half_life_s", "not a s value"),
        ("fairshare", "history_weight=-1", "policy_opt.history_weight", "0 or more"),
        ("fairshare", "half_life_s=nan", "policy_opt.half_life_s", "0 or more"),
        ("backfill", "backfill_depth=2.5", "policy_opt.backfill_depth", "not a jobs value"),
        ("backfill", "backfill_depth=0", "policy_opt.backfill_depth", "1 or more"),
        ("las", "las_thresholds_gpu_s=500,100", "policy_opt.las_thresholds_gpu_s", "increase"),
    ],
)
def test_unknown_names_and_bad_values_are_refused_naming_them(
    policy: str, given: str, field: str | None, words: str
) -> None:
    with pytest.raises((SpecError, UnknownName)) as err:
        apply_options(FactorySettings(policy=policy), [given])
    if field is not None:
        assert isinstance(err.value, SpecError) and err.value.field == field
    else:
        assert isinstance(err.value, UnknownName)
    assert words in str(err.value)


def test_an_option_changes_what_the_policy_decides() -> None:
    """backfill_depth=1: the backfill policy looks at one job past the blocked head, not two."""

    def started(settings: FactorySettings) -> list[int]:
        f = Factory(Cluster.virtual(4), [Project("a", quota=4)], settings)
        f.handle(Submit(1, JobSpec(("t",), project="a", gpus=3, time_limit_s=100)), 0)
        f.handle(Submit(2, JobSpec(("t",), project="a", gpus=4, time_limit_s=100)), 0)  # blocked head
        f.handle(Submit(3, JobSpec(("t",), project="a", gpus=2, time_limit_s=10)), 0)  # does not fit now
        f.handle(Submit(4, JobSpec(("t",), project="a", gpus=1, time_limit_s=10)), 0)  # backfills
        return sorted(f.running)

    assert started(FactorySettings(policy="backfill")) == [1, 4]
    assert started(apply_options(FactorySettings(policy="backfill"), ["backfill_depth=1"])) == [1]
