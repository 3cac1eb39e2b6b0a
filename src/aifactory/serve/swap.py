"""Which model answers, and hot swap when its registry alias moves.

A `ModelSlot` holds the model being served. The batcher reads the slot once per batch, so a
batch that started on the old model finishes on it, and the next batch runs on the new one:
the swap is one reference assignment, and no request is dropped or answered by a half-loaded
model. An `AliasWatcher` polls the registry (every 0.5 s by default), loads and warms up the
new version on its own thread, then swaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aifactory.core.errors import NotFound, SpecError
from aifactory.line.flavours import Predictor
from aifactory.line.signature import Signature

log = logging.getLogger("aifactory.serve")
MAX_WARM_ROWS = 64  # beyond this a first-use kernel build is small next to the batch's own compute


class Version(Protocol):
    """What the registry resolves a reference to (`aifactory.line.registry.ModelVersion`)."""

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def checkpoint_path(self) -> Any: ...

    @property
    def metrics(self) -> Any: ...

    @property
    def flavour(self) -> str: ...

    @property
    def measured_on(self) -> dict[str, str]: ...

    @property
    def input_signature(self) -> Signature: ...


class ModelSource(Protocol):
    """Resolves references like "digits@champion" and loads the versions they name."""

    def resolve(self, ref: str) -> Version: ...

    def load(self, version: Version) -> Predictor: ...


class RegistrySource:
    """The line's model registry under `home` and its checkpoint loader."""

    def __init__(self, home: Path) -> None:
        from aifactory.line.registry import Registry

        self.registry = Registry(Path(home))

    def resolve(self, ref: str) -> Version:
        return self.registry.resolve(ref)

    def load(self, version: Version) -> Predictor:
        from aifactory.line.flavours import load

        return load(version.flavour, Path(version.checkpoint_path), version.input_signature)


@dataclass(frozen=True, slots=True)
class Served:
    """One loaded model version, ready to answer."""

    model: str
    version: int
    checkpoint: str
    metrics: dict[str, Any]
    predictor: Predictor = field(repr=False)
    signature: Signature = field(repr=False)
    flavour: str = "digits"
    measured_on: dict[str, str] = field(default_factory=dict)
    # a classifier's labels in output order (None: regression), kept as a list for the response path
    classes: list[int] | None = None
    row_s: float = 0.0  # seconds per row of one call at the warm-up's largest batch, once warm


def load_version(source: ModelSource, mv: Version, warm_rows: int = 1) -> Served:
    """Load a resolved version and run it once at every batch size up to `warm_rows`.

    CPU backends build a kernel per input shape on first use (tens of ms each); doing that
    here, before the model is swapped in, keeps those stalls out of live requests.
    """
    predictor = source.load(mv)
    sig = mv.input_signature
    largest = min(max(1, warm_rows), MAX_WARM_ROWS)
    for rows in range(1, largest + 1):
        out = np.asarray(predictor.predict(np.zeros((rows, sig.width), dtype=np.float32)))
        if out.shape != (rows, sig.outputs):
            raise SpecError(
                "checkpoint", f"{mv.checkpoint_path}: model answers shape {out.shape}, expected (B, {sig.outputs})"
            )
    full = np.zeros((largest, sig.width), dtype=np.float32)
    started = time.perf_counter()
    predictor.predict(full)
    row_s = (time.perf_counter() - started) / largest
    metrics = dict(mv.metrics) if isinstance(mv.metrics, dict) else {}
    classes = list(sig.classes or range(sig.outputs)) if sig.task == "classification" else None
    return Served(
        mv.model,
        int(mv.version),
        str(mv.checkpoint_path),
        metrics,
        predictor,
        sig,
        mv.flavour,
        dict(mv.measured_on),
        classes,
        row_s,
    )


class ModelSlot:
    """The model currently answering; `run` is the batcher's runner."""

    def __init__(self, served: Served | None = None) -> None:
        self._served = served
        self.swaps = 0

    @property
    def current(self) -> Served | None:
        return self._served

    def swap(self, served: Served) -> None:
        self._served = served  # one reference assignment: batches read it once, so it is atomic for them
        self.swaps += 1

    def run(self, x: np.ndarray) -> tuple[np.ndarray, Served]:
        """Answer rows x (B, F) with the model in the slot now; returns (outputs (B, K), who answered)."""
        served = self._served
        if served is None:
            raise NotFound("no model is loaded in this slot yet")
        return np.asarray(served.predictor.predict(x), dtype=np.float32), served


class AliasWatcher:
    """Polls `ref` in the registry; when it resolves to another version, loads it and swaps the slot."""

    def __init__(self, source: ModelSource, ref: str, slot: ModelSlot, poll_s: float = 0.5, warm_rows: int = 1) -> None:
        self.source, self.ref, self.slot, self.poll_s = source, ref, slot, poll_s
        self.warm_rows = warm_rows
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # one load at a time, even if check() is also called directly

    def start(self) -> None:
        if self._task is None and self.poll_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await asyncio.to_thread(self.check)

    def check(self) -> bool:
        """Resolve the reference once; swap if it names another version. Returns whether it swapped.

        Errors (alias removed, checkpoint unreadable) keep the current model serving and are kept
        in `last_error`; the next poll tries again.
        """
        with self._lock:
            try:
                mv = self.source.resolve(self.ref)
                current = self.slot.current
                if current is not None and (current.version, current.checkpoint) == (
                    int(mv.version),
                    str(mv.checkpoint_path),
                ):
                    self.last_error = None
                    return False
                if current is not None and mv.input_signature.inputs != current.signature.inputs:
                    raise SpecError(
                        "signature", f"v{mv.version} takes other inputs than v{current.version}: not swapped"
                    )
                served = load_version(self.source, mv, self.warm_rows)
            except Exception as exc:  # database busy, alias gone, bad file: keep serving, retry next poll
                if str(exc) != self.last_error:
                    log.warning("cannot swap %s: %s", self.ref, exc)
                self.last_error = str(exc)
                return False
            old = self.slot.current
            self.slot.swap(served)
            self.last_error = None
            log.info("swapped %s: v%s -> v%s", self.ref, old.version if old else None, served.version)
            return True
