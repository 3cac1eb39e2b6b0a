"""A job may name several GPU models (`V100M16|V100M32`): it runs on a node of any of them."""

from __future__ import annotations

import pytest

from aifactory.core import Cluster, Factory, JobSpec, JobState, Node, Project, SpecError, Submit
from aifactory.core.factory import FactorySettings
from aifactory.core.job import model_allows


def floor(placement: str = "pack") -> Factory:
    nodes = [Node("t4", 2, gpu_model="T4"), Node("v16", 2, gpu_model="V100M16"), Node("v32", 2, gpu_model="V100M32")]
    return Factory(Cluster(nodes), [Project("a", quota=6)], FactorySettings(policy="fairshare", placement=placement))


def test_model_allows() -> None:
    assert model_allows(None, "T4") and model_allows("T4", "T4") and not model_allows("T4", "T40")
    assert model_allows("V100M16|V100M32", "V100M32") and not model_allows("V100M16|V100M32", "V100")


@pytest.mark.parametrize("placement", ["pack", "spread", "bestfit", "fgd"])
def test_a_job_naming_two_models_runs_on_either_and_never_on_a_third(placement: str) -> None:
    f = floor(placement)
    either = JobSpec(("t",), project="a", gpus=2, gpu_model="V100M16|V100M32")
    f.handle(Submit(1, either), 0)
    f.handle(Submit(2, either), 0)
    f.handle(Submit(3, either), 0)  # both V100 nodes are full; the T4 node is not one of its models
    held = sorted(f.job(i).placement.nodes[0] for i in (1, 2))  # type: ignore[union-attr]
    assert held == ["v16", "v32"] and f.job(3).state is JobState.QUEUED
    assert f.usage["a"] == 4


def test_a_job_naming_only_absent_models_is_refused_naming_the_field() -> None:
    with pytest.raises(SpecError) as err:
        floor().handle(Submit(1, JobSpec(("t",), project="a", gpu_model="A100|H100")), 0)
    assert err.value.field == "gpu_model" and "T4" in str(err.value)
