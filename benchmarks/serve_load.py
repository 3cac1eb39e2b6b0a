"""Load benchmark of the digits model server: dynamic batching on vs off, 1/8/64 closed-loop clients.

    .venv/bin/python benchmarks/serve_load.py [--seconds 4] [--clients 1,8,64]

1. Time to first prediction, two ways: the line's flywheel demo (`run_flywheel_demo`: raw
   digits file -> pipeline jobs on the embedded floor -> server job -> first answer; skip with
   `--no-demo`), and a direct path without the floor: raw digits (scikit-learn's bundled set)
   -> dataset version -> train the CNN in-process -> register + promote -> start the server
   process -> first 200. The first is `time_to_first_prediction_s` when it ran.
2. For batching on (`--max-batch 32 --max-wait-ms 5`) and off (`--no-batching`): start the
   server as its own process, then for each client count run a separate load process of
   closed-loop clients (each sends one 1-row request, waits for the answer, sends the next)
   over keep-alive HTTP/1.1 on raw asyncio streams (so the load generator costs little CPU
   on this 2-core box). Reports requests/s and p50/p99 latency (ms) after a warm-up.

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


def _requests(n: int = 256) -> list[bytes]:
    """Pre-encoded HTTP/1.1 requests, each one real digits image (a rotating pool)."""
    from sklearn.datasets import load_digits

    x = load_digits().data[-n:]
    out = []
    for row in x:
        body = json.dumps({"inputs": [row.tolist()]}).encode()
        head = (
            "POST /v1/models/digits/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
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


async def _load(url: str, clients: int, seconds: float) -> dict[str, float]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reqs = _requests()
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


def load_main(url: str, clients: int, seconds: float) -> None:
    print(json.dumps(asyncio.run(_load(url, clients, seconds))))


# -- orchestration ---------------------------------------------------------------------------


def start_server(home: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """The server as its own process on a free port; returns once it has written its ready file."""
    ready = home / f"ready-{time.monotonic_ns()}.json"
    cmd = [PY, "-m", "aifactory.serve.server", "--model", "digits@champion", "--home", str(home), "--port", "0"]
    proc = subprocess.Popen([*cmd, "--ready-file", str(ready), *extra], stdout=subprocess.DEVNULL)
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


def run_load(url: str, clients: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [PY, __file__, "--load", url, "--clients", str(clients), "--seconds", str(seconds)],
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


def served_requests(url: str) -> int:
    import httpx

    return int(httpx.get(f"{url}/v1/models/digits", timeout=30).json()["requests"])


def measure(home: Path, clients: list[int], seconds: float) -> dict[str, dict[int, dict[str, float]]]:
    """Each mode's server in its own process; per client count: load figures + server CPU per request."""
    modes = {"batched": ["--max-batch", "32", "--max-wait-ms", "5"], "unbatched": ["--no-batching"]}
    results: dict[str, dict[int, dict[str, float]]] = {}
    for mode, extra in modes.items():
        proc, url = start_server(home, extra)
        try:
            results[mode] = {}
            for n in clients:
                cpu0, req0 = cpu_seconds(proc.pid), served_requests(url)
                r = run_load(url, n, seconds)
                cpu1, req1 = cpu_seconds(proc.pid), served_requests(url)
                r["server_cpu_us_per_req"] = (cpu1 - cpu0) / max(1, req1 - req0 - 1) * 1e6
                results[mode][n] = r
                print(
                    f"{mode:>9} {n:>3} clients: {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                    f"p99 {r['p99_ms']:6.2f} ms  server CPU {r['server_cpu_us_per_req']:5.0f} us/req  "
                    f"errors {r['errors']}",
                    flush=True,
                )
        finally:
            stop_server(proc)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0, help="measured seconds per point (after a warm-up)")
    p.add_argument("--clients", default="1,8,64")
    p.add_argument("--epochs", type=int, default=8, help="training epochs for the served model")
    p.add_argument("--no-demo", action="store_true", help="skip the line demo's time to first prediction")
    p.add_argument("--load", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.load:
        load_main(a.load, int(a.clients), a.seconds)
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
    if batched["server_cpu_us_per_req"] > 0:
        cpu_ratio = unbatched["server_cpu_us_per_req"] / batched["server_cpu_us_per_req"]
        figures[f"server_cpu_speedup_{top}"] = round(cpu_ratio, 2)
    figures.update({f"direct_{k}": round(v, 3) for k, v in stages.items()})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
