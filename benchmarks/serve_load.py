"""Load benchmark of the model server: the digits CNN and a scikit-learn model, batching on vs off.

    .venv/bin/python benchmarks/serve_load.py [--seconds 4] [--clients 1,8,64] [--base REV] [--rounds 2]

1. Time to first prediction, two ways: the line's flywheel demo (`run_flywheel_demo`: raw
   digits file -> pipeline jobs on the embedded floor -> server job -> first answer; skip with
   `--no-demo`), and a direct path without the floor: raw digits (scikit-learn's bundled set)
   -> dataset version -> train the CNN in-process -> register + promote -> start the server
   process -> first 200. The first is `time_to_first_prediction_s` when it ran.
2. For batching on (`--max-batch 32 --max-wait-ms 5`) and off (`--no-batching`): start the
   server as its own process, then for each client count run a separate load process of
   closed-loop clients (each sends one 1-row request, waits for the answer, sends the next)
   over keep-alive HTTP/1.1 on raw asyncio streams (so the load generator costs little CPU
   on this 2-core box). Reports requests/s and p50/p99 latency (ms) after a warm-up. A quick
   model runs on the event loop in both modes; at the top client count the unbatched server is
   also measured with every request handed to the model's worker thread (`--inline-below-ms 0`),
   the unbatched path before that change (`speedup_vs_unbatched_on_worker_thread_64`). Then the
   batched/unbatched ratio again with both servers up at once and their loads alternating,
   `max(3, --rounds)` rounds (`speedup_64_paired`: the median of the rounds' own ratios), since
   the two sweeps above run minutes apart on a box whose speed drifts.

3. The same for a scikit-learn model (a scaler and a logistic regression on the wine table,
   flavour `sklearn`) at the top client count: `sklearn_batched_rps_64`, ...
4. With `--base REV` (e.g. the commit before the generic serving path): that revision's server
   (its own source tree from `git worktree`, the same virtual environment, its own home) and
   today's serve the same digits checkpoint, batched, at the top client count, alternating
   `--rounds` times: `cnn_batched_rps_ratio_vs_base` (today / base) and the CPU per request of
   each.
5. Efficiency: rows served per server CPU-second (batched, top client count) against the bare
   CNN's rows/s on one thread at batch 32, measured here in the same run
   (`served_rows_per_cpu_s_vs_bare`), and where the rest of a request's CPU goes: the parts the
   server runs per request (parsing and checking the JSON, the model's share of a batch,
   writing the answer, the prediction log) timed alone; the remainder is HTTP, the ASGI stack
   and the event loop, beside a peer measured under the same load: uvicorn alone answering a
   fixed body (`uvicorn_alone_us_per_req`).

The last line is one JSON object with the figures (`batched_rps_64`, `unbatched_rps_64`,
`batched_p99_ms_64`, `time_to_first_prediction_s`, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PY = sys.executable
WARMUP_S = 0.5


# -- load generator (runs in its own process: `serve_load.py --load URL ...`) -------------------


def _rows(model: str, n: int = 256) -> np.ndarray:
    from sklearn.datasets import load_digits, load_wine

    return (load_digits() if model == "digits" else load_wine()).data[-n:]


def _requests(model: str = "digits", rows: int = 1, n: int = 256) -> list[bytes]:
    """Pre-encoded HTTP/1.1 requests of `rows` real rows of the model's data each (a rotating pool)."""
    out = []
    data = _rows(model, n + rows)
    for i in range(len(data) - rows + 1):  # the wine table has 178 rows: fewer than n
        body = json.dumps({"inputs": data[i : i + rows].tolist()}).encode()
        head = (
            f"POST /v1/models/{model}/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


async def _client(host: str, port: int, reqs: list[bytes], start: float, stop: float, lat: list[float]) -> int:
    """One closed-loop client; appends latencies (s) of requests sent after the warm-up; returns errors."""
    reader, writer = await asyncio.open_connection(host, port)
    errors, i = 0, hash(asyncio.current_task()) % len(reqs)
    try:
        while (t0 := time.perf_counter()) < stop:
            writer.write(reqs[i % len(reqs)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            if t0 >= start:
                lat.append(time.perf_counter() - t0)
    finally:
        writer.close()
    return errors


async def _load(url: str, clients: int, seconds: float, model: str, rows: int = 1) -> dict[str, float]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reqs = _requests(model, rows)
    lat: list[float] = []
    t = time.perf_counter()
    start, stop = t + WARMUP_S, t + WARMUP_S + seconds
    errors = await asyncio.gather(*(_client(host, int(port), reqs, start, stop, lat) for _ in range(clients)))
    ms = np.array(lat) * 1000
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": int(sum(errors)),
        "rps": len(lat) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def load_main(url: str, clients: int, seconds: float, model: str, rows: int) -> None:
    print(json.dumps(asyncio.run(_load(url, clients, seconds, model, rows))))


# -- orchestration ---------------------------------------------------------------------------


def _env(src: Path | None) -> dict[str, str]:
    """The environment of a process running `src` (another revision's source tree), or this one."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def start_server(
    home: Path, extra: list[str], model: str = "digits", src: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The server as its own process on a free port; returns once it has written its ready file."""
    ready = home / f"ready-{time.monotonic_ns()}.json"
    cmd = [PY, "-m", "aifactory.serve.server", "--model", f"{model}@champion", "--home", str(home), "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--ready-file", str(ready), *extra],
        stdout=subprocess.DEVNULL,
        env={**_env(src), "AIFACTORY_HOME": str(home)},
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start (exit {proc.poll()})")
        time.sleep(0.005)
    return proc, json.loads(ready.read_text())["url"]


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def first_prediction(home: Path, epochs: int) -> tuple[float, dict[str, float]]:
    """Raw digits -> dataset -> train -> register -> promote -> serve -> first answer; returns (seconds, stages)."""
    import httpx

    t0 = time.perf_counter()
    from aifactory.line.datasets import Datasets
    from aifactory.line.digits_model import DigitsConfig, save_checkpoint
    from aifactory.line.registry import Registry
    from aifactory.line.train import TrainParams, train

    datasets = Datasets(home)
    version = datasets.create_from_sklearn("digits", "digits")
    x, y = datasets.load(version)
    t_data = time.perf_counter()
    cfg = DigitsConfig()
    model, history = train(x, y, cfg, TrainParams(epochs=epochs))
    t_train = time.perf_counter()
    ckpt = save_checkpoint(home / "digits-v1.pt", model, cfg, {"dataset": version.ref})
    registry = Registry(home)
    mv = registry.register("digits", ckpt, {"val_accuracy": history[-1]["val_accuracy"]}, {"dataset": version.ref})
    registry.set_alias("digits", "champion", mv.version)
    t_reg = time.perf_counter()
    proc, url = start_server(home, [])
    try:
        row = load_digits_row()
        r = httpx.post(f"{url}/v1/models/digits/predict", json={"inputs": [row]}, timeout=30)
        r.raise_for_status()
    finally:
        stop_server(proc)
    t_end = time.perf_counter()
    stages = {
        "dataset_s": t_data - t0,
        "train_s": t_train - t_data,
        "register_s": t_reg - t_train,
        "serve_first_s": t_end - t_reg,
        "val_accuracy": history[-1]["val_accuracy"],
    }
    return t_end - t0, stages


def demo_first_prediction() -> tuple[float | None, str]:
    """The line demo's own figure (it runs the whole flywheel, ~1 min); (None, why) if it cannot run."""
    import io

    from rich.console import Console

    try:
        from aifactory.cli.line_demo import run_flywheel_demo

        with tempfile.TemporaryDirectory(prefix="serve-bench-demo-") as tmp:
            summary = run_flywheel_demo(Console(file=io.StringIO()), home=Path(tmp))
    except Exception as exc:  # any failure of another area's demo: fall back to the direct measurement
        return None, f"demo failed: {type(exc).__name__}: {exc}"
    return float(summary.time_to_first_prediction_s), "line demo (floor jobs)"


def load_digits_row() -> list[float]:
    from sklearn.datasets import load_digits

    return load_digits().data[0].tolist()


def run_load(url: str, clients: int, seconds: float, model: str = "digits", rows: int = 1) -> dict[str, float]:
    out = subprocess.run(
        [
            PY,
            __file__,
            "--load",
            url,
            "--clients",
            str(clients),
            "--seconds",
            str(seconds),
            "--model",
            model,
            "--rows",
            str(rows),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc); 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(url: str, model: str = "digits") -> tuple[int, float]:
    """(requests answered, CPU seconds of the model's calls) so far; a revision without the second: 0."""
    import httpx

    info = httpx.get(f"{url}/v1/models/{model}", timeout=30).json()
    return int(info["requests"]), float(info.get("model_cpu_s", 0.0))


MODES = {
    "batched": ["--max-batch", "32", "--max-wait-ms", "5"],
    "unbatched": ["--no-batching"],
    # every request alone on the model's worker thread: the unbatched path before quick models ran on
    # the event loop (a thread hand-off per request), for the ratio against that baseline
    "unbatched-thread": ["--no-batching", "--inline-below-ms", "0"],
}


def measure(
    home: Path,
    clients: list[int],
    seconds: float,
    model: str = "digits",
    modes: tuple[str, ...] = ("batched", "unbatched"),
    src: Path | None = None,
    label: str = "",
    rows: int = 1,
) -> dict[str, dict[int, dict[str, float]]]:
    """Each mode's server in its own process; per client count: load figures + server CPU per request."""
    results: dict[str, dict[int, dict[str, float]]] = {}
    for mode in modes:
        proc, url = start_server(home, MODES[mode], model, src)
        try:
            results[mode] = {}
            for n in clients:
                cpu0, (req0, model0) = cpu_seconds(proc.pid), served(url, model)
                r = run_load(url, n, seconds, model, rows)
                cpu1, (req1, model1) = cpu_seconds(proc.pid), served(url, model)
                r["server_cpu_s"] = cpu1 - cpu0
                r["served"] = req1 - req0 - 1
                r["server_cpu_us_per_req"] = (cpu1 - cpu0) / max(1, req1 - req0 - 1) * 1e6
                r["model_cpu_us_per_row"] = (model1 - model0) / max(1, (req1 - req0 - 1) * rows) * 1e6
                results[mode][n] = r
                print(
                    f"{label or model:>8} {mode:>9} {n:>3} clients: {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                    f"p99 {r['p99_ms']:6.2f} ms  server CPU {r['server_cpu_us_per_req']:5.0f} us/req  "
                    f"errors {r['errors']}",
                    flush=True,
                )
        finally:
            stop_server(proc)
    return results


# -- the scikit-learn model, the base revision, the bare model -------------------------------------


def register_wine(home: Path) -> None:
    """A scaler + logistic regression on the wine table, registered as flavour sklearn, champion."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from aifactory.line import flavours
    from aifactory.line.datasets import Datasets
    from aifactory.line.registry import Registry
    from aifactory.line.signature import Signature

    datasets = Datasets(home)
    version = datasets.create_from_sklearn("wine", "wine")
    x, y = datasets.load(version)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x, y)
    path, flavour = flavours.save(model, home / "wine-model")
    registry = Registry(home)
    signature = Signature.from_schema(datasets.schema(version))
    mv = registry.register("wine", path, {}, {"dataset": version.ref}, flavour, signature)
    registry.set_alias("wine", "champion", mv.version)


BASE_REGISTER = """
import sys
from pathlib import Path
from aifactory.line.registry import Registry
registry = Registry(Path(sys.argv[1]))
version = registry.register("digits", Path(sys.argv[2]), {}, {})
registry.set_alias("digits", "champion", version.version)
"""


def base_tree(rev: str, where: Path) -> Path:
    """`rev`'s source tree (a detached git worktree under `where`); returns its src folder."""
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", str(where), rev], check=True, capture_output=True
    )
    return where / "src"


def drop_tree(where: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "remove", "--force", str(where)], check=False, capture_output=True
    )


def bare_rows_per_s(home: Path, batch: int = 32, seconds: float = 2.0) -> float:
    """The served CNN alone on one thread: rows/s at `batch` rows per call (no HTTP, no checks, no log)."""
    import torch

    from aifactory.line.registry import Registry

    torch.set_num_threads(1)
    model = Registry(home).resolve("digits@champion").predictor()
    x = np.ascontiguousarray(_rows("digits", batch), dtype=np.float32)
    for _ in range(20):
        model.predict(x)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.predict(x)
        calls += 1
    return calls * batch / (time.perf_counter() - t0)


def per_request_parts(home: Path, mean_batch: float) -> dict[str, float]:
    """Microseconds per 1-row request of each part the server runs for it, timed alone here."""
    import torch

    from aifactory.line.registry import Registry
    from aifactory.serve.feedback import LIVE, Answer, FeedbackLog
    from aifactory.serve.outputs import outputs
    from aifactory.serve.wire import PredictRequest, PredictResponse

    torch.set_num_threads(1)
    mv = Registry(home).resolve("digits@champion")
    model, signature = mv.predictor(), mv.input_signature
    bodies = [json.dumps({"inputs": [r.tolist()]}).encode() for r in _rows("digits", 256)]
    batch = max(1, round(mean_batch))
    xb = np.ascontiguousarray(_rows("digits", batch), dtype=np.float32)
    log = FeedbackLog(home / "parts")

    def timed(fn: object, n: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)  # type: ignore[operator]
        return (time.perf_counter() - t0) / n * 1e6

    def parse(i: int) -> None:
        body = PredictRequest.model_validate_json(bodies[i % 256])
        x = np.asarray(body.inputs, dtype=np.float32)
        assert x.shape[1] == signature.width

    out = model.predict(xb[:1])

    batch_out = model.predict(xb)
    classes = list(range(batch_out.shape[1]))
    made = {"batch": outputs(batch_out, classes)}

    def respond(i: int) -> None:  # as the server does: the batch's lists once per batch, a slice per request
        if i % batch == 0:
            made["batch"] = outputs(batch_out, classes)
        mine = made["batch"][i % batch : i % batch + 1]
        answer = PredictResponse.model_construct(
            request_id="r", model="digits", version=1, predictions=mine.predictions, probabilities=mine.probabilities
        )
        answer.__pydantic_serializer__.to_json(answer)

    answers = [Answer(f"r{i}", LIVE, "digits", 1, xb[:1], out, time.time()) for i in range(2000)]

    def log_rows(i: int) -> None:
        if i % 500 == 0:
            log.log(answers[i : i + 500])

    parts = {
        "parse_and_check_us": timed(parse, 3000),
        "model_share_us": timed(lambda _i: model.predict(xb), 300) / batch,
        "respond_us": timed(respond, 3000),
        "prediction_log_us": timed(log_rows, 2000),
    }
    log.close()
    return parts


# A peer for "where the rest goes": uvicorn as the server runs it (httptools, uvloop, no access
# log), answering a fixed body of the size of a digits answer, with no application work at all.
HTTP_FLOOR_APP = """
import json, sys, uvicorn
from aifactory.netutil import bind_tcp
BODY = json.dumps({"request_id": "0" * 21, "model": "digits", "version": 1, "predictions": [3],
                   "probabilities": [[0.123456] * 10]}).encode()
seen = [0]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = (await receive()).get("body", b"")
    seen[0] += scope["method"] == "POST"
    out = BODY if scope["method"] == "POST" else json.dumps({"requests": seen[0]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
sock = bind_tcp("127.0.0.1", 0, backlog=2048, inheritable=True)
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False, lifespan="off")).run(
    sockets=[sock]
)
"""


def http_floor_us_per_req(clients: int, seconds: float) -> float:
    """Server CPU per request of uvicorn alone (HTTP_FLOOR_APP) under the same load."""
    import httpx

    proc = subprocess.Popen([PY, "-c", HTTP_FLOOR_APP], stdout=subprocess.PIPE, env=_env(None))
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{int(proc.stdout.readline())}"

        def count() -> int:
            return int(httpx.get(f"{url}/count", timeout=30).json()["requests"])

        deadline = time.monotonic() + 30
        while True:
            try:
                req0 = count()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        cpu0 = cpu_seconds(proc.pid)
        run_load(url, clients, seconds)
        cpu1, req1 = cpu_seconds(proc.pid), count()
    finally:
        stop_server(proc)
    return (cpu1 - cpu0) / max(1, req1 - req0) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0, help="measured seconds per point (after a warm-up)")
    p.add_argument("--clients", default="1,8,64")
    p.add_argument("--epochs", type=int, default=8, help="training epochs for the served model")
    p.add_argument("--no-demo", action="store_true", help="skip the line demo's time to first prediction")
    p.add_argument("--base", default=None, help="also serve this git revision's server, side by side (e.g. HEAD~5)")
    p.add_argument("--rounds", type=int, default=2, help="alternations of base and today for the side-by-side figure")
    p.add_argument("--load", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default="digits", help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.load:
        load_main(a.load, int(a.clients), a.seconds, a.model, a.rows)
        return
    clients = [int(c) for c in a.clients.split(",")]
    demo_s, demo_source = (None, "skipped (--no-demo)") if a.no_demo else demo_first_prediction()
    print(f"line demo time to first prediction: {demo_s if demo_s is None else round(demo_s, 2)} s ({demo_source})")
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        home = Path(tmp)
        os.environ["AIFACTORY_HOME"] = str(home)
        ttfp, stages = first_prediction(home, a.epochs)
        print(
            f"direct time to first prediction: {ttfp:.2f} s  ({', '.join(f'{k} {v:.2f}' for k, v in stages.items())})"
        )
        results = measure(home, clients, a.seconds)
        on_thread = measure(home, [max(clients)], a.seconds, modes=("unbatched-thread",))["unbatched-thread"]
        top = max(clients)
        paired = paired_speedup(home, max(3, a.rounds), top, a.seconds)
        register_wine(home)
        sk = measure(home, [top], a.seconds, "wine", label="sklearn")
        side = side_by_side(home, a.base, a.rounds, top, a.seconds) if a.base else {}
        bare = bare_rows_per_s(home)
        batched = results["batched"][top]
        eight = measure(home, [top], a.seconds, "digits", ("batched",), None, "8 rows", rows=8)["batched"][top]
        parts = per_request_parts(home, mean_batch=32.0)
        floor_us = http_floor_us_per_req(top, a.seconds)
    figures: dict[str, float | str] = {
        "time_to_first_prediction_s": round(demo_s if demo_s is not None else ttfp, 3),
        "time_to_first_prediction_source": demo_source if demo_s is not None else "direct (no floor)",
        "time_to_first_prediction_direct_s": round(ttfp, 3),
    }
    for mode, by_clients in results.items():
        for n, r in by_clients.items():
            figures[f"{mode}_rps_{n}"] = round(r["rps"], 1)
            figures[f"{mode}_p50_ms_{n}"] = round(r["p50_ms"], 2)
            figures[f"{mode}_p99_ms_{n}"] = round(r["p99_ms"], 2)
            figures[f"{mode}_server_cpu_us_per_req_{n}"] = round(r["server_cpu_us_per_req"], 1)
    top = max(clients)
    batched, unbatched = results["batched"][top], results["unbatched"][top]
    if unbatched["rps"] > 0:
        figures[f"speedup_{top}"] = round(batched["rps"] / unbatched["rps"], 2)
    figures.update(paired)
    figures[f"unbatched_on_worker_thread_rps_{top}"] = round(on_thread[top]["rps"], 1)
    if on_thread[top]["rps"] > 0:
        figures[f"speedup_vs_unbatched_on_worker_thread_{top}"] = round(batched["rps"] / on_thread[top]["rps"], 2)
    if batched["server_cpu_us_per_req"] > 0:
        cpu_ratio = unbatched["server_cpu_us_per_req"] / batched["server_cpu_us_per_req"]
        figures[f"server_cpu_speedup_{top}"] = round(cpu_ratio, 2)
    figures.update({f"direct_{k}": round(v, 3) for k, v in stages.items()})
    for mode, by_clients in sk.items():
        r = by_clients[top]
        figures[f"sklearn_{mode}_rps_{top}"] = round(r["rps"], 1)
        figures[f"sklearn_{mode}_p99_ms_{top}"] = round(r["p99_ms"], 2)
        figures[f"sklearn_{mode}_server_cpu_us_per_req_{top}"] = round(r["server_cpu_us_per_req"], 1)
    if sk["unbatched"][top]["rps"] > 0:
        figures[f"sklearn_speedup_{top}"] = round(sk["batched"][top]["rps"] / sk["unbatched"][top]["rps"], 2)
    figures.update(side)
    served_per_cpu_s = batched["served"] / batched["server_cpu_s"] if batched["server_cpu_s"] > 0 else 0.0
    figures["bare_cnn_rows_per_s_batch32"] = round(bare, 1)
    figures["served_rows_per_cpu_s"] = round(served_per_cpu_s, 1)
    figures["served_rows_per_cpu_s_vs_bare"] = round(served_per_cpu_s / bare, 3) if bare else 0.0
    eight_per_cpu_s = eight["served"] * 8 / eight["server_cpu_s"] if eight["server_cpu_s"] > 0 else 0.0
    figures["served_rows_per_cpu_s_vs_bare_8_rows_a_request"] = round(eight_per_cpu_s / bare, 3) if bare else 0.0
    per_req = batched["server_cpu_us_per_req"]
    known = sum(parts.values())
    figures.update({k: round(v, 1) for k, v in parts.items()})
    figures["http_asgi_loop_us"] = round(max(0.0, per_req - known), 1)
    figures["uvicorn_alone_us_per_req"] = round(floor_us, 1)
    in_server = batched.get("model_cpu_us_per_row", 0.0)
    figures["model_cpu_us_per_row_in_server"] = round(in_server, 1)
    print(
        f"bare CNN {bare:,.0f} rows/s; served {served_per_cpu_s:,.0f} rows per server CPU-second "
        f"({served_per_cpu_s / bare:.1%} of bare). Per request {per_req:.0f} us of server CPU: "
        + ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
        + f", HTTP/ASGI/event loop (the rest) {max(0.0, per_req - known):.0f}, of which uvicorn alone "
        f"answering a fixed body costs {floor_us:.0f}; with 8 rows a request: {eight_per_cpu_s / bare:.1%} of bare"
    )
    print(
        f"the model's own calls inside the server: {in_server:.0f} us of CPU a row, against "
        f"{1e6 / bare:.0f} us alone in a tight loop (its caches shared with the HTTP work between batches)"
    )
    print(json.dumps(figures))


def paired_speedup(home: Path, rounds: int, clients: int, seconds: float) -> dict[str, float]:
    """Batched over unbatched requests/s with both servers up at once and their loads alternating
    (which goes first alternating too): the median of each round's own ratio. The box's speed drifts
    by tens of percent over minutes; measured minutes apart, the two sides would each get a
    different box."""
    procs = [start_server(home, MODES[mode]) for mode in ("batched", "unbatched")]
    try:
        (_, batched_url), (_, unbatched_url) = procs
        for url in (batched_url, unbatched_url):
            run_load(url, clients, 1.0)  # warm-up
        ratios = []
        for i in range(rounds):
            order = (batched_url, unbatched_url) if i % 2 == 0 else (unbatched_url, batched_url)
            rps = {url: run_load(url, clients, seconds)["rps"] for url in order}
            ratios.append(rps[batched_url] / max(rps[unbatched_url], 1e-9))
            print(
                f"  paired round {i + 1}: batched {rps[batched_url]:.0f} req/s, unbatched {rps[unbatched_url]:.0f}: "
                f"{ratios[-1]:.2f}x",
                flush=True,
            )
    finally:
        for proc, _ in procs:
            stop_server(proc)
    return {
        f"speedup_{clients}_paired": round(float(np.median(ratios)), 2),
        f"speedup_{clients}_paired_min": round(min(ratios), 2),
        f"speedup_{clients}_paired_max": round(max(ratios), 2),
    }


def side_by_side(home: Path, rev: str, rounds: int, clients: int, seconds: float) -> dict[str, float]:
    """Today's server and `rev`'s, batched, on the same checkpoint, alternating; their ratio."""
    ckpt = home / "digits-v1.pt"
    with tempfile.TemporaryDirectory(prefix="serve-base-") as tmp:
        tree, base_home = Path(tmp) / "tree", Path(tmp) / "home"
        base_home.mkdir()
        src = base_tree(rev, tree)
        try:
            subprocess.run([PY, "-c", BASE_REGISTER, str(base_home), str(ckpt)], check=True, env=_env(src))
            base_rps, new_rps, base_cpu, new_cpu = [], [], [], []
            for _ in range(rounds):
                b = measure(base_home, [clients], seconds, "digits", ("batched",), src, "base")["batched"][clients]
                n = measure(home, [clients], seconds, "digits", ("batched",), None, "today")["batched"][clients]
                base_rps.append(b["rps"])
                new_rps.append(n["rps"])
                base_cpu.append(b["server_cpu_us_per_req"])
                new_cpu.append(n["server_cpu_us_per_req"])
        finally:
            drop_tree(tree)
    ratio = float(np.median(new_rps) / np.median(base_rps))
    print(f"side by side with {rev}: batched {clients} clients, today / base = {ratio:.3f}")
    return {
        f"base_batched_rps_{clients}": round(float(np.median(base_rps)), 1),
        f"today_batched_rps_{clients}": round(float(np.median(new_rps)), 1),
        "cnn_batched_rps_ratio_vs_base": round(ratio, 3),
        f"base_server_cpu_us_per_req_{clients}": round(float(np.median(base_cpu)), 1),
        f"today_server_cpu_us_per_req_{clients}": round(float(np.median(new_cpu)), 1),
    }


if __name__ == "__main__":
    main()
