"""Run the model server on a background thread of this process (embedded factory, demo, tests).

Same app, same HTTP on loopback as `python -m aifactory.serve.server`, without paying a
process start and a second torch import.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn

from aifactory.core.errors import AifactoryError
from aifactory.serve.app import create_app
from aifactory.serve.guard import Guard
from aifactory.serve.server import ServeConfig, Serving, bind, make_auth, uvicorn_config
from aifactory.serve.swap import ModelSource, RegistrySource


class BackgroundServer:
    """`with BackgroundServer(config) as srv: httpx.post(srv.url + ...)`; stops (and flushes the log) on exit."""

    def __init__(self, config: ServeConfig, source: ModelSource | None = None) -> None:
        self.serving = Serving(config, source or RegistrySource(config.home))
        self._sock = bind(config.host, 0 if config.port is None else config.port)
        host, port = self._sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        app = Guard(create_app(self.serving), config.max_body_bytes, make_auth(config))
        self._server = uvicorn.Server(uvicorn_config(app))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout_s: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise AifactoryError(f"model server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
