"""The model server: its runtime (batcher, hot swap, shadow, prediction log) and the process runner.

Endpoints (see docs/serving.md):
  POST /v1/models/{name}/predict  (also POST /api/predict)   -> PredictResponse
  POST /v1/feedback                                          -> FeedbackResponse
  GET  /v1/models, /v1/models/{name}                         -> ModelInfo
  GET  /healthz                                              -> Health (no token needed)

Run as a plain process the floor can launch as a job:
  python -m aifactory.serve.server --model digits@champion --port 8500 --home ~/.aifactory
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import uvicorn

from aifactory.atomic import write_atomic
from aifactory.config import resolve_home
from aifactory.core.errors import AifactoryError, SpecError, UnknownName
from aifactory.netutil import bind_tcp, http_url, is_loopback, tls_files
from aifactory.serve.app import create_app
from aifactory.serve.batching import BatchSettings, DynamicBatcher
from aifactory.serve.feedback import LIVE, Answer, FeedbackLog, LogWriter
from aifactory.serve.guard import Guard, TokenCheck, any_of, static_token
from aifactory.serve.outputs import Outputs, outputs
from aifactory.serve.shadow import Shadow
from aifactory.serve.swap import AliasWatcher, ModelSlot, ModelSource, RegistrySource, Served, load_version
from aifactory.serve.wire import (
    FeedbackRequest,
    FeedbackResponse,
    ModelInfo,
    PredictRequest,
    PredictResponse,
)

log = logging.getLogger("aifactory.serve")


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Everything `aifactory serve` can set; defaults are the documented ones."""

    ref: str = "digits@champion"
    home: Path = Path(".aifactory")
    host: str = "127.0.0.1"
    port: int = 8500
    batch: BatchSettings = field(default_factory=BatchSettings)
    shadow_ref: str | None = None
    token: str | None = None  # accepted as 'Authorization: Bearer <token>'
    factory_tokens: bool = False  # also accept every token the floor's store under home knows
    poll_s: float = 0.5  # how often the registry alias is checked for a new version
    max_body_bytes: int = 1 << 20  # 1 MiB: ~3,000 rows of 64 pixels in JSON
    threads: int = 1  # torch intra-op threads; the event loop and the log writer need the other core
    inline_below_ms: float = 2.0  # a batch expected to take less runs on the event loop (0: never)
    log_url: str | None = None  # prediction log database; default SQLite under home
    tls_cert: Path | None = None  # serve HTTPS with this certificate and key
    tls_key: Path | None = None
    insecure: bool = False  # allow serving beyond loopback without a token


class Serving:
    """The runtime behind the app: live slot + watcher + batcher, optional shadow, prediction log."""

    def __init__(self, config: ServeConfig, source: ModelSource) -> None:
        self.config = config
        warm = config.batch.max_batch
        self.slot = ModelSlot(load_version(source, source.resolve(config.ref), warm))
        self.watcher = AliasWatcher(source, config.ref, self.slot, config.poll_s, warm)
        self.batcher: DynamicBatcher[Outputs, Served] = DynamicBatcher(
            self._answer, config.batch, name="live", inline=self._quick
        )
        self.feedback = FeedbackLog(config.home, config.log_url)
        self.writer = LogWriter(self.feedback)
        self.shadow: Shadow | None = None
        if config.shadow_ref:
            self.shadow = Shadow(source, config.shadow_ref, self.writer, config.batch, config.poll_s)
            self.shadow.load()
        self.requests = 0
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(6)  # per process: ids from two runs of the server never collide

    @property
    def served(self) -> Served:
        served = self.slot.current
        assert served is not None, "the live slot is filled at construction"
        return served

    async def start(self) -> None:
        self.batcher.start()
        self.watcher.start()
        if self.shadow is not None:
            self.shadow.start()

    async def close(self) -> None:
        await self.watcher.close()
        await self.batcher.close()
        if self.shadow is not None:
            await self.shadow.close()
        self.writer.close()
        self.feedback.close()

    def _next_id(self) -> str:
        """A unique request id; cheaper than uuid4 (no os.urandom per request)."""
        return f"{self._id_prefix}-{next(self._ids):08d}"

    def check_name(self, name: str) -> None:
        """The path names the model; this server serves exactly one."""
        if name != self.served.model:
            raise UnknownName("model", name, [self.served.model])

    def rows(self, inputs: list[Any]) -> np.ndarray:
        """Request rows -> float32 (B, F) in the served signature's columns; SpecError naming row and column."""
        signature = self.served.signature
        # A one-row request (the usual one) skips the generator: it showed in profiles of the hot path.
        if type(inputs[0]) is list and (len(inputs) == 1 or all(type(row) is list for row in inputs)):
            try:
                x = np.asarray(inputs, dtype=np.float32)  # the wire type checked every value is a number
            except ValueError:  # ragged: rows of different lengths
                x = np.zeros((0, 0), dtype=np.float32)
            if x.ndim == 2 and x.shape[1] == signature.width:
                return x
        return signature.rows(inputs)  # objects by column name, or a row of the wrong length: said exactly

    def _quick(self, rows: int) -> bool:
        """Whether the live model answers `rows` rows in under `inline_below_ms` (its time per row measured
        at its warm-up). Per batch, not per model: a request larger than `max_batch` runs alone and whole,
        and must not hold the event loop up that much longer."""
        return self.served.row_s * rows * 1000 < self.config.inline_below_ms

    def _answer(self, x: np.ndarray) -> tuple[Outputs, Served]:
        """The batch's model call and its answers, on the batcher's thread."""
        raw, served = self.slot.run(x)
        return outputs(raw, served.classes), served

    async def predict(self, body: PredictRequest) -> PredictResponse:
        x = self.rows(body.inputs)
        out, served = await self.batcher.submit(x)
        request_id = body.request_id or self._next_id()
        self.requests += 1
        classes = served.classes
        self.writer.put(
            Answer(request_id, LIVE, served.model, served.version, x, out.raw, time.time(), classes, classes is None)
        )
        if self.shadow is not None:
            self.shadow.offer(request_id, x)
        return PredictResponse.model_construct(  # built from our own arrays: nothing to validate
            request_id=request_id,
            model=served.model,
            version=served.version,
            predictions=out.predictions,
            probabilities=out.probabilities,
        )

    def add_feedback(self, body: FeedbackRequest) -> FeedbackResponse:
        signature = self.served.signature
        labels = body.as_list()
        field = "label" if body.label is not None else "labels"
        for i, value in enumerate(labels):
            signature.label(value, field if body.label is not None else f"{field}[{i}]")
        self.writer.flush()  # the prediction being labelled may still be on its way to the log
        labelled = self.feedback.add_feedback(body.request_id, labels)
        return FeedbackResponse(request_id=body.request_id, labelled=labelled)

    def info(self) -> ModelInfo:
        served, stats = self.served, self.batcher.stats
        return ModelInfo(
            model=served.model,
            ref=self.config.ref,
            version=served.version,
            flavour=served.flavour,
            signature=served.signature.model_dump(mode="json"),
            checkpoint=served.checkpoint,
            metrics=served.metrics,
            measured_on=served.measured_on,
            max_batch=self.config.batch.max_batch,
            max_wait_ms=self.config.batch.max_wait_s * 1000,
            batching=self.config.batch.max_batch > 1,
            inline=self._quick(self.config.batch.max_batch),
            shadow_ref=self.config.shadow_ref,
            shadow_version=self.shadow.version if self.shadow else None,
            swaps=self.slot.swaps,
            requests=self.requests,
            batches=stats.batches,
            mean_batch_rows=stats.rows / stats.batches if stats.batches else 0.0,
            shadow_answered=self.shadow.answered if self.shadow else 0,
            shadow_dropped=self.shadow.dropped if self.shadow else 0,
            largest_batch_rows=stats.largest,
            model_cpu_s=round(stats.model_cpu_s, 6),
            log_dropped=self.writer.dropped,
            log_errors=self.writer.errors,
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket the uvicorn workers inherit; port 0 picks a free one."""
    return bind_tcp(host, port, backlog=2048, inheritable=True)


def make_auth(config: ServeConfig) -> TokenCheck | None:
    """The token check the config asks for; None: no auth."""
    checks = [static_token(config.token)] if config.token else []
    if config.factory_tokens:
        from aifactory.live.tokens import StoreTokens

        checks.append(StoreTokens(config.home))
    return any_of(checks)


def uvicorn_config(app: Guard, tls: dict[str, str] | None = None) -> uvicorn.Config:
    """No access log and no proxy-header rewriting: both cost on every request and serve no one here."""
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        lifespan="on",
        **(tls or {}),  # type: ignore[arg-type]
    )


def public_settings(config: ServeConfig) -> dict[str, Any]:
    """The effective settings of a served model, without its secret (saved with it in the ready file)."""
    out = {**asdict(config), "home": str(config.home), "token": "set" if config.token else None}
    return out | {k: str(out[k]) for k in ("tls_cert", "tls_key") if out[k] is not None}


def run(config: ServeConfig, source: ModelSource | None = None, ready_file: Path | None = None) -> None:
    """Load the model, bind, and serve until SIGINT/SIGTERM. Raises AifactoryError before binding if it cannot."""
    import torch

    torch.set_num_threads(max(1, config.threads))
    serving = Serving(config, source or RegistrySource(config.home))
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    tls = tls_files(config.tls_cert, config.tls_key)
    url = http_url(host, port, bool(tls))
    auth = make_auth(config)
    if auth is None and not is_loopback(host):
        log.warning("serving on %s without a token (--insecure): anyone who can reach it can use it", host)
    if not tls and not is_loopback(host):
        log.warning("serving on %s over plain HTTP: tokens and inputs cross the network in clear", host)
    app = Guard(create_app(serving), config.max_body_bytes, auth)
    server = uvicorn.Server(uvicorn_config(app, tls))
    # The heap now holds torch, FastAPI, SQLAlchemy and the model: ~10^6 long-lived objects that
    # every full collection would walk (0.2-0.5 s on this box, a stall for every request in
    # flight). Freezing moves them out of the collector's sight.
    gc.collect()
    gc.freeze()
    served = serving.served
    print(f"serving {config.ref} (v{served.version}) at {url}", flush=True)
    if ready_file is not None:
        info = {"url": url, "pid": os.getpid(), "model": served.model, "version": served.version}
        info["settings"] = public_settings(config)
        write_atomic(ready_file, json.dumps(info))
    server.run(sockets=[sock])


class _Parser(argparse.ArgumentParser):
    """Usage errors as one SpecError line (exit 2), never argparse's usage dump."""

    def error(self, message: str) -> NoReturn:
        raise SpecError("options", message)


def serve_parser(prog: str) -> argparse.ArgumentParser:
    """The model server's options: one list for `aifactory serve` and `python -m aifactory.serve.server`."""
    p = _Parser(
        prog=prog, description="Serve a model: dynamic batching, hot swap when its alias moves, shadow, feedback log."
    )
    p.add_argument("ref", nargs="?", default=None, help="registry reference: digits@champion, digits@3, digits")
    p.add_argument("--model", default=None, help="the same as REF (default digits@champion)")
    p.add_argument("--home", type=Path, default=None, help="factory home (default $AIFACTORY_HOME or ~/.aifactory)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8500, help="TCP port; 0 picks a free one")
    p.add_argument("--max-batch", type=int, default=32, help="rows per model call")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits to fill, ms")
    p.add_argument("--no-batching", action="store_true", help="run every request alone")
    p.add_argument("--shadow", default=None, help="challenger reference to shadow, e.g. digits@challenger")
    p.add_argument("--token-file", type=Path, default=None, help="require 'Authorization: Bearer <token in file>'")
    p.add_argument(
        "--factory-tokens", action="store_true", help="also accept the floor's tokens (aifactory token create)"
    )
    p.add_argument("--poll-s", type=float, default=0.5, help="registry poll period for hot swap, s (0: never)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument(
        "--inline-below-ms",
        type=float,
        default=2.0,
        help="run a batch on the event loop, not a worker thread, when the model answers it in less (0: never)",
    )
    p.add_argument("--log-url", default=None, help="prediction log database URL (default: SQLite under home)")
    p.add_argument(
        "--ready-file", type=Path, default=None, help="write {url, pid, model, version, settings} once bound"
    )
    p.add_argument("--tls-cert", type=Path, default=None, help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", type=Path, default=None, help="the private key of --tls-cert")
    p.add_argument("--insecure", action="store_true", help="allow serving beyond loopback without a token")
    return p


def parse_args(
    argv: Sequence[str] | None = None, prog: str = "python -m aifactory.serve.server"
) -> tuple[ServeConfig, Path | None]:
    a = serve_parser(prog).parse_args(argv)
    if a.ref is not None and a.model is not None and a.ref != a.model:
        raise SpecError("model", f"two references given: {a.ref!r} and --model {a.model!r}")
    config = make_config(
        ref=a.ref or a.model or "digits@champion",
        home=a.home,
        host=a.host,
        port=a.port,
        max_batch=a.max_batch,
        max_wait_ms=a.max_wait_ms,
        batching=not a.no_batching,
        shadow=a.shadow,
        token_file=a.token_file,
        factory_tokens=a.factory_tokens,
        poll_s=a.poll_s,
        threads=a.threads,
        inline_below_ms=a.inline_below_ms,
        log_url=a.log_url,
        tls_cert=a.tls_cert,
        tls_key=a.tls_key,
        insecure=a.insecure,
    )
    return config, a.ready_file


def make_config(
    *,
    ref: str,
    home: Path | None,
    host: str,
    port: int,
    max_batch: int,
    max_wait_ms: float,
    batching: bool,
    shadow: str | None,
    token_file: Path | None,
    poll_s: float,
    threads: int,
    inline_below_ms: float = 2.0,
    factory_tokens: bool = False,
    log_url: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    insecure: bool = False,
) -> ServeConfig:
    """Check command-line values (SpecError naming the option) and build the config."""
    if not 0 <= port <= 65535:
        raise SpecError("port", f"must be within 0..65535, got {port}")
    if poll_s < 0:
        raise SpecError("poll_s", f"must be >= 0, got {poll_s}")
    if threads < 1:
        raise SpecError("threads", f"must be >= 1, got {threads}")
    if not 0 <= inline_below_ms <= 1000:  # also refuses NaN
        raise SpecError("inline_below_ms", f"must be within 0..1000 ms, got {inline_below_ms}")
    batch = BatchSettings(max_batch, max_wait_ms / 1000) if batching else BatchSettings.off()
    tls_files(tls_cert, tls_key)  # both or neither, readable
    if not (token_file or factory_tokens or insecure or is_loopback(host)):
        raise SpecError(
            "host",
            f"{host} is reachable from the network: give --token-file or --factory-tokens "
            "(or --insecure to serve anyone who can reach it)",
        )
    return ServeConfig(
        ref=ref,
        home=resolve_home(home),
        host=host,
        port=port,
        batch=batch,
        shadow_ref=shadow,
        token=read_token(token_file) if token_file else None,
        factory_tokens=factory_tokens,
        poll_s=poll_s,
        threads=threads,
        inline_below_ms=inline_below_ms,
        log_url=log_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure=insecure,
    )


def read_token(path: Path) -> str:
    """The bearer token in `path` (the factory's `$AIFACTORY_HOME/token` or a per-user token file)."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise SpecError("token_file", f"cannot read {path}: {exc.strerror}") from None
    if not token:
        raise SpecError("token_file", f"{path} is empty")
    return token


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m aifactory.serve.server`: exit 2 with a one-line error on bad input."""
    # Warnings from libraries; the server's own news (a model swapped in, a shadow started) at info.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aifactory").setLevel(logging.INFO)
    log.setLevel(logging.INFO)  # swaps and shadow failures; not every library's chatter
    try:
        config, ready_file = parse_args(argv)
        run(config, ready_file=ready_file)
    except AifactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
