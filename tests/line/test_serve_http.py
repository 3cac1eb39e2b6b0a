"""The model server over real HTTP on loopback: real registry, real checkpoints, real SQLite log."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from aifactory.core.errors import NotFound
from aifactory.line.digits_model import DigitsConfig, LoadedModel, build_model, load_checkpoint, save_checkpoint
from aifactory.line.registry import Registry
from aifactory.serve.background import BackgroundServer
from aifactory.serve.batching import BatchSettings
from aifactory.serve.feedback import SHADOW, FeedbackLog
from aifactory.serve.server import ServeConfig, Serving
from aifactory.serve.swap import RegistrySource

DIGITS = load_digits().data.astype(np.float32)  # (1797, 64) pixels 0..16


def register_versions(home: Path, n: int) -> Registry:
    """n versions of `digits` (different seeds, so different answers); v1 champion, v2 challenger."""
    registry = Registry(home)
    for seed in range(n):
        torch.manual_seed(seed)
        cfg = DigitsConfig(widths=(4, 8), hidden=16)
        path = save_checkpoint(home / f"seed{seed}.pt", build_model(cfg), cfg, {"seed": seed})
        registry.register("digits", path, {"val_accuracy": 0.1 * seed}, {"seed": seed})
    registry.set_alias("digits", "champion", 1)
    if n > 1:
        registry.set_alias("digits", "challenger", 2)
    return registry


@pytest.fixture
def registry(home: Path) -> Registry:
    return register_versions(home, 2)


@pytest.fixture
def models(registry: Registry) -> dict[int, LoadedModel]:
    return {v.version: load_checkpoint(v.checkpoint_path, "cpu") for v in registry.versions("digits")}


def serve(home: Path, **overrides: object) -> BackgroundServer:
    """A server on a free loopback port; small batches keep the per-shape warm-up short."""
    settings: dict[str, object] = {"batch": BatchSettings(max_batch=8, max_wait_s=0.002), **overrides}
    return BackgroundServer(ServeConfig(home=home, port=0, **settings))  # type: ignore[arg-type]


@pytest.fixture
def server(home: Path, registry: Registry) -> Iterator[BackgroundServer]:
    with serve(home) as srv:
        yield srv


def test_predict_answers_with_the_champion(server: BackgroundServer, models: dict[int, LoadedModel]) -> None:
    x = DIGITS[:3]
    r = httpx.post(f"{server.url}/v1/models/digits/predict", json={"inputs": x.tolist(), "request_id": "req-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["request_id"], body["model"], body["version"]) == ("req-1", "digits", 1)
    expected = models[1].predict_proba(x)
    np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)
    assert body["predictions"] == expected.argmax(axis=1).tolist()
    r2 = httpx.post(f"{server.url}/api/predict", json={"inputs": x[:1].tolist()})
    assert r2.status_code == 200 and r2.json()["version"] == 1
    assert re.fullmatch(r"[0-9a-f]{12}-\d{8}", r2.json()["request_id"])  # made by the server
    info = httpx.get(f"{server.url}/v1/models/digits").json()
    assert info["version"] == 1 and info["ref"] == "digits@champion" and info["requests"] == 2


@pytest.mark.parametrize("inline_below_ms", [1000.0, 0.0], ids=["on-the-loop", "on-the-worker-thread"])
def test_concurrent_requests_are_batched_over_http(
    home: Path, registry: Registry, models: dict, inline_below_ms: float
) -> None:
    async def burst(url: str) -> list[dict]:
        async with httpx.AsyncClient(base_url=url) as client:
            rs = await asyncio.gather(
                *(client.post("/api/predict", json={"inputs": DIGITS[i : i + 1].tolist()}) for i in range(24))
            )
        return [r.json() for r in rs]

    with serve(home, batch=BatchSettings(max_batch=8, max_wait_s=0.2), inline_below_ms=inline_below_ms) as srv:
        answers = asyncio.run(burst(srv.url))
        info = httpx.get(f"{srv.url}/v1/models/digits").json()
        metrics = httpx.get(f"{srv.url}/metrics").text
    assert info["inline"] is (inline_below_ms > 0)  # the CNN's batch of 8 takes ~1 ms: never 1 s, never < 0
    assert info["requests"] == 24 and 4 <= info["largest_batch_rows"] <= 8
    assert info["batches"] <= 6  # 24 one-row requests in batches of up to 8, not 24 model calls
    assert "aifactory_serve_requests_total 24.0" in metrics
    assert info["model_cpu_s"] > 0 and "aifactory_serve_model_cpu_seconds_total" in metrics
    assert 'aifactory_serve_model_version{model="digits"} 1.0' in metrics
    for i, body in enumerate(answers):  # and every request got its own row's answer back
        np.testing.assert_allclose(body["probabilities"], models[1].predict_proba(DIGITS[i : i + 1]), atol=1e-5)


BAD_INPUTS = [
    ({"inputs": [[1.0] * 63]}, ["body", "inputs", 0]),
    ({"inputs": [["a"] * 64]}, ["body", "inputs", 0, 0]),
    ({"inputs": [[1.0] * 63 + ["3"]]}, ["body", "inputs", 0, 63]),
    ({"inputs": [[True] * 64]}, ["body", "inputs", 0, 0]),
    ({"inputs": [[1.0] * 64], "extra": 1}, ["body", "extra"]),
    ({"inputs": []}, ["body", "inputs"]),
    ({"inputs": "pixels"}, ["body", "inputs"]),
    ({"inputs": [[1.0] * 64], "request_id": "spaces are not ok"}, ["body", "request_id"]),
    ({}, ["body", "inputs"]),
]


def test_bad_inputs_get_422_naming_the_field(server: BackgroundServer) -> None:
    for payload, field in BAD_INPUTS:
        r = httpx.post(f"{server.url}/v1/models/digits/predict", json=payload)
        assert r.status_code == 422, payload
        assert r.json()["detail"][0]["loc"] == field, payload
    nan = b'{"inputs": [[NaN' + b", 1" * 63 + b"]]}"
    r = httpx.post(f"{server.url}/api/predict", content=nan, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "inputs", 0, 0]
    assert server.serving.requests == 0


def test_malformed_unknown_and_oversized(server: BackgroundServer) -> None:
    url = f"{server.url}/v1/models/digits/predict"
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = httpx.post(f"{server.url}/v1/models/digitz/predict", json={"inputs": [[1.0] * 64]})
    assert r.status_code == 404 and "did you mean 'digits'" in r.json()["detail"]
    assert httpx.get(f"{server.url}/v1/models/cats").status_code == 404
    huge = b'{"inputs": [' + b"1," * 600_000 + b"1]}"
    assert httpx.post(url, content=huge).status_code == 413
    chunked = httpx.post(url, content=iter([huge[:700_000], huge[700_000:]]))  # no Content-Length
    assert chunked.status_code == 413
    assert httpx.post(url, json={"inputs": DIGITS[:1].tolist()}).status_code == 200  # still serving


def test_feedback_labels_feed_the_flywheel(server: BackgroundServer, home: Path) -> None:
    x = DIGITS[10:12]
    rid = httpx.post(f"{server.url}/api/predict", json={"inputs": x.tolist()}).json()["request_id"]
    r = httpx.post(f"{server.url}/v1/feedback", json={"request_id": rid, "labels": [0, 1]})
    assert r.status_code == 200 and r.json() == {"request_id": rid, "labelled": 2}
    assert httpx.post(f"{server.url}/v1/feedback", json={"request_id": rid, "labels": [0, 1]}).status_code == 409
    assert httpx.post(f"{server.url}/v1/feedback", json={"request_id": "nope", "label": 1}).status_code == 404
    r = httpx.post(f"{server.url}/v1/feedback", json={"request_id": rid, "label": 10})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "label"]
    r = httpx.post(f"{server.url}/v1/feedback", json={"request_id": rid})
    assert r.status_code == 422
    flog = FeedbackLog(home)
    got_x, got_y, cursor = flog.labelled_since(0)
    np.testing.assert_array_equal(got_x, x)
    assert got_y.tolist() == [0, 1] and cursor > 0
    assert flog.recent_accuracy("digits", 10) is not None


def test_token_is_required_when_configured(home: Path, registry: Registry) -> None:
    from aifactory.live.settings import LiveSettings
    from aifactory.live.store.repository import Store

    store = Store(LiveSettings(home=home).database_url).open()
    store.add_token("alice-token", "alice", projects=["vision"])  # a per-user token of the floor
    with serve(home, token="s3cret", factory_tokens=True) as srv:
        url = f"{srv.url}/v1/models/digits/predict"
        payload = {"inputs": DIGITS[:1].tolist()}
        assert httpx.post(url, json=payload).status_code == 401
        for token, status in [("wrong", 401), ("s3cret", 200), ("alice-token", 200), ("alice-token", 200)]:
            r = httpx.post(url, json=payload, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == status, token
        assert httpx.post(url, json=payload, headers={"Authorization": "Basic s3cret"}).status_code == 401
        assert httpx.get(f"{srv.url}/healthz").json()["status"] == "ok"  # probes need no token
    store.close()


def test_unknown_model_or_alias_refuses_to_start(home: Path, registry: Registry) -> None:
    with pytest.raises(NotFound, match="did you mean 'champion'"):
        Serving(ServeConfig(home=home, ref="digits@champoin"), RegistrySource(home))
    with pytest.raises(NotFound, match="cats"):
        Serving(ServeConfig(home=home, ref="cats@champion"), RegistrySource(home))


def hammer(url: str, stop: threading.Event, seen: list[tuple[int, int, list[list[float]]]]) -> None:
    """Closed-loop client: one digits row per request until told to stop; records (status, version, probs)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            row = int(i % 200)
            r = client.post("/v1/models/digits/predict", json={"inputs": DIGITS[row : row + 1].tolist()})
            body = r.json() if r.status_code == 200 else {}
            seen.append((r.status_code, body.get("version", -1), body.get("probabilities", []), row))  # type: ignore[arg-type]
            i += 7


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_hot_swap_under_load_drops_nothing(home: Path, registry: Registry, models: dict[int, LoadedModel]) -> None:
    with serve(home, poll_s=0.05) as srv:
        stop = threading.Event()
        seen: list[list[tuple[int, int, list[list[float]], int]]] = [[] for _ in range(3)]
        clients = [threading.Thread(target=hammer, args=(srv.url, stop, s)) for s in seen]
        for c in clients:
            c.start()
        wait_until(lambda: all(len(s) >= 5 for s in seen))  # every client is answered by v1 ...
        registry.set_alias("digits", "champion", 2)  # ... when the alias moves under it
        wait_until(lambda: all(s[-1][1] == 2 for s in seen) and all(sum(a[1] == 2 for a in s) >= 5 for s in seen))
        stop.set()
        for c in clients:
            c.join()
    assert srv.serving.slot.swaps == 1
    for client_seen in seen:
        statuses = {s for s, _, _, _ in client_seen}
        versions = [v for _, v, _, _ in client_seen]
        assert statuses == {200}
        assert versions == sorted(versions) and versions[0] == 1 and versions[-1] == 2  # swapped once, for good
        for _, version, probs, row in client_seen:  # the version in the response is the one that answered
            np.testing.assert_allclose(probs, models[version].predict_proba(DIGITS[row : row + 1]), atol=1e-5)


def test_shadow_answers_are_logged_never_returned(
    home: Path, registry: Registry, models: dict[int, LoadedModel]
) -> None:
    with serve(home, shadow_ref="digits@challenger") as srv:
        ids = []
        for i in range(5):
            x = DIGITS[i * 3 : i * 3 + 2]
            body = httpx.post(f"{srv.url}/api/predict", json={"inputs": x.tolist()}).json()
            assert body["version"] == 1
            np.testing.assert_allclose(body["probabilities"], models[1].predict_proba(x), atol=1e-5)
            ids.append((body["request_id"], x))
        info = httpx.get(f"{srv.url}/v1/models/digits").json()
        assert info["shadow_ref"] == "digits@challenger" and info["shadow_version"] == 2
    flog = FeedbackLog(home)  # the server stopped: its log is flushed
    for rid, x in ids:
        shadow = flog.answers(request_id=rid, role=SHADOW)
        assert [(a.row, a.version) for a in shadow] == [(0, 2), (1, 2)]
        np.testing.assert_allclose(np.stack([a.probs for a in shadow]), models[2].predict_proba(x), atol=1e-5)
    assert flog.count(SHADOW) == 10 and flog.count() == 10


def test_shadow_of_a_missing_challenger_waits_for_it(home: Path) -> None:
    registry = register_versions(home, 1)
    with serve(home, shadow_ref="digits@challenger", poll_s=0.05) as srv:
        assert httpx.post(f"{srv.url}/api/predict", json={"inputs": DIGITS[:1].tolist()}).status_code == 200
        assert srv.serving.shadow is not None and srv.serving.shadow.version is None
        path = registry.versions("digits")[0].checkpoint_path
        registry.register("digits", path, {}, {})
        registry.set_alias("digits", "challenger", 2)
        wait_until(lambda: srv.serving.shadow is not None and srv.serving.shadow.version == 2)
