"""The two worked examples beside digits, each through its whole flywheel on the floor.

wine: a scikit-learn classifier trained by the user's entry point; diabetes: a PyTorch
regressor trained by a plain script through a `command` step. For each: the pipeline runs as
floor jobs and promotes v1; the server answers by the model's signature; the world drifts,
labelled feedback becomes the next dataset and holdout versions, the pipeline retrains, the
gate (by the metric the pipeline names) promotes v2 on the new holdout and the server swaps.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_wine

from aifactory.line.executors import FloorExecutor
from aifactory.line.flywheel import Flywheel, TriggerSettings
from aifactory.line.pipeline import Pipeline, load_pipeline
from aifactory.line.registry import Registry
from aifactory.line.runner import PipelineRunner, RunResult
from aifactory.serve.background import BackgroundServer
from aifactory.serve.batching import BatchSettings
from aifactory.serve.feedback import FeedbackLog
from aifactory.serve.server import ServeConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.slow


async def _on_floor(pipeline: Pipeline, home: Path) -> RunResult:
    from aifactory.live.service import FactoryService
    from aifactory.live.settings import LiveSettings

    service = await FactoryService.open(LiveSettings(home=home, gpus=2, isolation="none"))
    try:
        return await PipelineRunner(FloorExecutor(service), home).run(pipeline)
    finally:
        await service.close()


def _served_version(url: str, model: str, want: int) -> int:
    deadline = time.monotonic() + 20
    version = -1
    while time.monotonic() < deadline:
        version = httpx.get(f"{url}/v1/models/{model}").json()["version"]
        if version == want:
            break
        time.sleep(0.1)
    return int(version)


def _predict_and_label(url: str, model: str, x: np.ndarray, labels: list[int] | list[float]) -> list[object]:
    """Every row as a request (half by column name), then its true label as feedback; the answers."""
    info = httpx.get(f"{url}/v1/models/{model}").json()
    names = [c["name"] for c in info["signature"]["inputs"]]
    answers = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for i, row in enumerate(x.tolist()):
            body = {"inputs": [dict(zip(names, row, strict=True)) if i % 2 else row]}
            r = client.post(f"/v1/models/{model}/predict", json=body)
            assert r.status_code == 200, r.text
            answers.append(r.json())
            fb = client.post("/v1/feedback", json={"request_id": r.json()["request_id"], "label": labels[i]})
            assert fb.status_code == 200, fb.text
    return answers


def _turn(home: Path, pipeline: Pipeline, model: str, rows: int) -> RunResult:
    wheel = Flywheel(
        FeedbackLog(home), home, TriggerSettings(min_new_rows=rows, accuracy_below=None), model, None, model
    )
    decision = wheel.check()
    assert decision.fire and decision.new_rows == rows, decision.reason
    absorbed = wheel.absorb()
    assert absorbed is not None
    train, holdout = absorbed
    assert (train.ref, train.parent, holdout.ref, holdout.parent) == (f"{model}@2", 1, f"{model}-holdout@2", 1)
    result = asyncio.run(_on_floor(pipeline, home))
    assert result.outputs["ingest"]["dataset"] == f"{model}@2" and result.lineage["dataset"] == f"{model}@2"
    assert result.outputs["evaluate"]["evaluated_on"] == f"{model}-holdout@2"
    return result


def test_wine_sklearn_flywheel(home: Path) -> None:
    pipeline = load_pipeline(EXAMPLES / "wine" / "pipeline.yaml")
    first = asyncio.run(_on_floor(pipeline, home))
    assert first.outputs["deploy"]["promoted"] and first.outputs["deploy"]["gate_metric"] == "f1"
    assert all(first.lineage["steps"][s]["job"] for s in ("train", "evaluate"))  # floor jobs
    reg = Registry(home)
    v1 = reg.resolve("wine@champion")
    assert v1.flavour == "sklearn" and v1.signature is not None and v1.signature.classes == [0, 1, 2]
    assert [c.name for c in v1.signature.inputs][:2] == ["alcohol", "malic_acid"]
    assert v1.measured_on["holdout_f1"] == "wine-holdout@1" and v1.lineage["dataset"] == "wine@1"

    data = load_wine()
    x = data.data.copy()
    x[:, 0] += 1.5  # the world drifts: the alcohol meter now reads 1.5 % higher
    batch = BatchSettings(max_batch=8, max_wait_s=0.002)
    with BackgroundServer(ServeConfig(ref="wine@champion", home=home, port=0, poll_s=0.1, batch=batch)) as srv:
        bad = httpx.post(f"{srv.url}/v1/models/wine/predict", json={"inputs": [{"alcohol": 13.0}]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "inputs", 0, "malic_acid"]
        short = httpx.post(f"{srv.url}/v1/models/wine/predict", json={"inputs": [[1.0, 2.0]]})
        assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "inputs", 0]
        answers = _predict_and_label(srv.url, "wine", x, data.target.tolist())
        assert all(a["predictions"][0] in (0, 1, 2) and len(a["probabilities"][0]) == 3 for a in answers)  # type: ignore[index]
        wrong = httpx.post(f"{srv.url}/v1/feedback", json={"request_id": answers[0]["request_id"], "label": 7})  # type: ignore[index]
        assert wrong.status_code == 422 and "classes" in wrong.text

        second = _turn(home, pipeline, "wine", len(x))
        deploy = second.outputs["deploy"]
        assert deploy["promoted"] and deploy["champion"] == 2, deploy["gate_reason"]
        assert _served_version(srv.url, "wine", 2) == 2  # hot swap on the alias move
    decision = reg.decisions("wine")[-1]
    assert (decision.metric, decision.holdout, decision.higher_is_better) == ("f1", "wine-holdout@2", True)
    assert decision.champion_score is not None and decision.challenger_score >= decision.champion_score


def test_diabetes_torch_regression_flywheel(home: Path) -> None:
    pipeline = load_pipeline(EXAMPLES / "diabetes" / "pipeline.yaml")
    first = asyncio.run(_on_floor(pipeline, home))
    assert first.outputs["deploy"]["promoted"] and first.outputs["deploy"]["gate_metric"] == "rmse"
    assert first.outputs["train"]["flavour"] == "torch" and "val_rmse" in first.outputs["train"]
    reg = Registry(home)
    v1 = reg.resolve("diabetes@champion")
    assert v1.flavour == "torch" and v1.signature is not None and v1.signature.task == "regression"
    assert v1.metrics["holdout_rmse"] < 80 and v1.measured_on["holdout_rmse"] == "diabetes-holdout@1"

    data = load_diabetes()
    drifted = (data.target + 80.0).tolist()  # the world drifts: the disease now progresses faster
    batch = BatchSettings(max_batch=8, max_wait_s=0.002)
    with BackgroundServer(ServeConfig(ref="diabetes@champion", home=home, port=0, poll_s=0.1, batch=batch)) as srv:
        answers = _predict_and_label(srv.url, "diabetes", data.data, drifted)
        first_answer = answers[0]
        assert isinstance(first_answer, dict) and first_answer["probabilities"] is None
        assert isinstance(first_answer["predictions"][0], float)
        bad = httpx.post(f"{srv.url}/v1/feedback", json={"request_id": first_answer["request_id"], "label": "high"})
        assert bad.status_code == 422

        second = _turn(home, pipeline, "diabetes", len(data.target))
        deploy = second.outputs["deploy"]
        assert deploy["promoted"] and deploy["champion"] == 2, deploy["gate_reason"]
        assert deploy["challenger_score"] < deploy["champion_score"]  # lower RMSE on the same new holdout
        assert _served_version(srv.url, "diabetes", 2) == 2
    v2 = reg.get("diabetes", 2)
    assert v2.lineage["dataset"] == "diabetes@2" and v2.measured_on["holdout_rmse"] == "diabetes-holdout@2"
