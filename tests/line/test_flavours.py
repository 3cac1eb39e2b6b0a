"""Models of every flavour: registered with a signature, loaded back by the registry, served over HTTP."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from aifactory.core.errors import SpecError, UnknownName
from aifactory.line import flavours
from aifactory.line.registry import Registry
from aifactory.line.signature import Signature
from aifactory.line.tables import Column
from aifactory.serve.background import BackgroundServer
from aifactory.serve.batching import BatchSettings
from aifactory.serve.server import ServeConfig

IRIS = load_iris()
X = IRIS.data.astype(np.float32)
SIG = Signature(
    inputs=[Column(name=n.replace(" (cm)", "").replace(" ", "_"), type="float") for n in IRIS.feature_names],
    task="classification",
    classes=[0, 1, 2],
)
LOGITS = SIG.model_copy(update={"logits": True})

PYFUNC = '''
import numpy as np

def predict(x):
    """Petal length decides: a rule anyone can read."""
    out = np.zeros((len(x), 3), dtype=np.float32)
    out[np.arange(len(x)), np.digitize(x[:, 2], [2.5, 4.9])] = 1.0
    return out
'''


class Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _onnx_model(w: np.ndarray, b: np.ndarray) -> Any:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _models(tmp_path: Path) -> dict[str, tuple[Any, Signature, np.ndarray]]:
    """flavour -> (model object, signature, the probabilities it must answer for X)."""
    tree = DecisionTreeClassifier(random_state=0).fit(X, IRIS.target)
    linear = Linear().eval()
    with torch.no_grad():
        want_linear = torch.softmax(linear(torch.from_numpy(X)), dim=1).numpy()
    w, b = linear.fc.weight.detach().numpy().T.copy(), linear.fc.bias.detach().numpy().copy()
    module_file = tmp_path / "petal_rule.py"
    module_file.write_text(PYFUNC)
    spec = importlib.util.spec_from_file_location("petal_rule", module_file)
    assert spec is not None and spec.loader is not None
    rule = importlib.util.module_from_spec(spec)
    sys.modules["petal_rule"] = rule
    spec.loader.exec_module(rule)
    return {
        "sklearn": (tree, SIG, tree.predict_proba(X)),
        "torchscript": (torch.jit.script(linear), LOGITS, want_linear),
        "onnx": (_onnx_model(w, b), LOGITS, want_linear),
        "pyfunc": (rule.predict, SIG, rule.predict(X)),
    }


@pytest.mark.parametrize("flavour", ["sklearn", "torchscript", "onnx", "pyfunc"])
def test_each_flavour_is_registered_loaded_and_served(home: Path, tmp_path: Path, flavour: str) -> None:
    model, sig, want = _models(tmp_path)[flavour]
    path, found = flavours.save(model, tmp_path / flavour, flavour if flavour == "onnx" else None)
    assert found == flavour  # told apart from the object itself (an ONNX graph is named)
    reg = Registry(home)
    version = reg.register("iris", path, {"holdout_accuracy": 0.9}, {}, flavour, sig, {"holdout_accuracy": "iris@1"})
    reg.set_alias("iris", "champion", version.version)
    again = reg.resolve("iris@champion")
    assert (again.flavour, again.signature, again.measured_on) == (flavour, sig, {"holdout_accuracy": "iris@1"})
    np.testing.assert_allclose(again.predictor().predict(X), want, atol=1e-5)

    config = ServeConfig(ref="iris@champion", home=home, port=0, batch=BatchSettings(max_batch=4, max_wait_s=0.002))
    with BackgroundServer(config) as srv:
        info = httpx.get(f"{srv.url}/v1/models/iris").json()
        assert info["flavour"] == flavour and info["signature"]["inputs"][0]["name"] == "sepal_length"
        rows = X[:5].tolist()
        body = httpx.post(f"{srv.url}/v1/models/iris/predict", json={"inputs": rows}).json()
        np.testing.assert_allclose(body["probabilities"], want[:5], atol=1e-5)
        assert body["predictions"] == want[:5].argmax(axis=1).tolist()
        named = [dict(zip([c.name for c in sig.inputs], r, strict=True)) for r in rows[:2]]
        by_name = httpx.post(f"{srv.url}/v1/models/iris/predict", json={"inputs": named}).json()
        assert by_name["probabilities"] == body["probabilities"][:2]
        bad = httpx.post(f"{srv.url}/v1/models/iris/predict", json={"inputs": [{**named[0], "petal_width": "wide"}]})
        assert bad.status_code == 422


def test_a_model_that_does_not_fit_its_signature_gets_no_version(home: Path, tmp_path: Path) -> None:
    reg = Registry(home)
    tree = DecisionTreeClassifier(random_state=0).fit(X, IRIS.target)
    path, _ = flavours.save(tree, tmp_path)
    wide = SIG.model_copy(update={"inputs": [*SIG.inputs, Column(name="extra", type="float")]})
    with pytest.raises(SpecError) as err:
        reg.register("iris", path, {}, {}, "sklearn", wide)
    assert err.value.field == "model"
    two = SIG.model_copy(update={"classes": [0, 1]})
    with pytest.raises(SpecError, match="classes"):
        reg.register("iris", path, {}, {}, "sklearn", two)
    with pytest.raises(UnknownName):
        reg.register("iris", path, {}, {}, "keras", SIG)
    with pytest.raises(SpecError, match="measured_on"):
        reg.register("iris", path, {"f1": 1.0}, {}, "sklearn", SIG, {"accuracy": "iris@1"})
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x05not a pickle")
    with pytest.raises(SpecError, match="cannot be loaded as sklearn"):
        reg.register("iris", junk, {}, {}, "sklearn", SIG)
    assert reg.models() == []


def test_signature_checks_rows_by_position_and_by_name() -> None:
    np.testing.assert_array_equal(SIG.rows([[1, 2, 3, 4.5]]), np.array([[1, 2, 3, 4.5]], dtype=np.float32))
    cases: list[tuple[Any, str]] = [
        ([[1, 2, 3]], "inputs[0]"),
        ([{"sepal_length": 1, "sepal_width": 2, "petal_length": 3}], "inputs[0].petal_width"),
        ([{"sepal_length": 1, "sepal_width": 2, "petal_length": 3, "petal_width": 4, "x": 1}], "inputs[0].x"),
        ([[1, 2, 3, 4], [1, 2, True, 4]], "inputs[1].petal_length"),
        ([[1, 2, 3, float("nan")]], "inputs[0].petal_width"),
        (["row"], "inputs[0]"),
    ]
    for rows, field in cases:
        with pytest.raises(SpecError) as err:
            SIG.rows(rows)
        assert err.value.field == field
    with pytest.raises(SpecError, match="classes"):
        SIG.label(5)
    regression = Signature(inputs=SIG.inputs, task="regression")
    assert regression.label(2.5) == 2.5
    with pytest.raises(SpecError):
        regression.label(float("inf"))


def test_shadow_mode_for_a_scikit_learn_model(home: Path, tmp_path: Path) -> None:
    """The challenger answers a copy of live traffic into the log; the client only ever sees the champion."""
    from aifactory.serve.feedback import SHADOW, FeedbackLog

    reg = Registry(home)
    for depth in (1, None):
        tree = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X, IRIS.target)
        path, flavour = flavours.save(tree, tmp_path / f"depth{depth}")
        reg.register("iris", path, {}, {}, flavour, SIG)
    reg.set_alias("iris", "champion", 1)
    reg.set_alias("iris", "challenger", 2)
    config = ServeConfig(
        ref="iris@champion", shadow_ref="iris@challenger", home=home, port=0, batch=BatchSettings(4, 0.002)
    )
    with BackgroundServer(config) as srv:
        answer = httpx.post(f"{srv.url}/v1/models/iris/predict", json={"inputs": X[100:103].tolist()}).json()
        assert answer["version"] == 1
        for _ in range(100):
            if httpx.get(f"{srv.url}/v1/models/iris").json()["shadow_answered"] == 1:
                break
            time.sleep(0.05)
    shadow = FeedbackLog(home).answers(answer["request_id"], SHADOW)
    assert [a.version for a in shadow] == [2, 2, 2] and [a.predicted for a in shadow] == [2, 2, 2]
    assert answer["predictions"] != [a.predicted for a in shadow]  # the stump says 1: only the live answer returns
