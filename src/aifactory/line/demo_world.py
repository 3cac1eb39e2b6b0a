"""The demo's world: the raw data file the line ingests, the traffic it sends, and the shift.

The shift makes digits look as if drawn with a thicker pen on a noisier scanner: every pixel
takes the brightest of itself and its left, right and lower neighbours, then Gaussian noise
(sigma 2 intensity levels of 16) is added and the result clipped to 0..16.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

NOISE_SIGMA = 2.0  # intensity levels (pixels are 0..16)


def shift_digits(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x (N, 64) clean pixels -> (N, 64) thicker, noisier pixels, float32 in 0..16."""
    img = x.reshape(-1, 8, 8)
    pad = np.pad(img, ((0, 0), (1, 1), (1, 1)))
    thick = np.maximum.reduce([pad[:, 1:-1, 1:-1], pad[:, 1:-1, 2:], pad[:, 1:-1, :-2], pad[:, 2:, 1:-1]])
    noisy = thick + rng.normal(0.0, NOISE_SIGMA, thick.shape)
    return np.clip(noisy, 0, 16).reshape(-1, 64).astype(np.float32)


@dataclass(frozen=True)
class World:
    source: Path  # the raw data file the line ingests (.npz)
    clean: np.ndarray  # (N, 64) clean requests
    clean_y: np.ndarray
    shifted: np.ndarray  # (M, 64) shifted requests whose labels come back
    shifted_y: np.ndarray
    test: np.ndarray  # (K, 64) shifted requests nothing trains on: the final comparison
    test_y: np.ndarray


def make_world(folder: Path, world_fraction: float, seed: int, clean_share: float = 0.17) -> World:
    """Split the digits: the line's raw file (written to `folder`) and the world's traffic."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_world = int(len(y) * world_fraction)
    world, line = order[:n_world], order[n_world:]
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "digits.npz"
    np.savez(source, X=x[line], y=y[line])
    n_clean = int(n_world * clean_share)
    n_test = int(n_world * 0.28)
    clean, shifted, test = world[:n_clean], world[n_clean : n_world - n_test], world[n_world - n_test :]
    return World(
        source=source,
        clean=x[clean],
        clean_y=y[clean],
        shifted=shift_digits(x[shifted], rng),
        shifted_y=y[shifted],
        test=shift_digits(x[test], np.random.default_rng(seed + 1)),
        test_y=y[test],
    )


@dataclass
class Traffic:
    """Every request the demo sent: latency in ms (client side, round trip)."""

    latencies_ms: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


@dataclass
class Phase:
    n: int
    accuracy: float
    versions: list[int]  # model version that answered, per request


async def send(client: Any, x: np.ndarray, y: np.ndarray, traffic: Traffic, feedback: bool, concurrency: int) -> Phase:
    """Send one request per row from `concurrency` clients; post the true label back if `feedback`."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(y)):
        queue.put_nowait(i)
    right = np.zeros(len(y), dtype=bool)
    versions = np.zeros(len(y), dtype=np.int64)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            rid = f"demo-{uuid.uuid4().hex[:16]}"
            began = time.perf_counter()
            resp = await client.post("/api/predict", json={"inputs": [x[i].tolist()], "request_id": rid})
            traffic.latencies_ms.append((time.perf_counter() - began) * 1000)
            resp.raise_for_status()
            body = resp.json()
            right[i] = body["predictions"][0] == int(y[i])
            versions[i] = body["version"]
            if feedback:
                (await client.post("/v1/feedback", json={"request_id": rid, "label": int(y[i])})).raise_for_status()

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return Phase(len(y), float(right.mean()) if len(y) else float("nan"), versions.tolist())
