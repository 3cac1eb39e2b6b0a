"""Start and stop a real API server in a subprocess (tests, benchmarks, scripts).

The server binds port 0 and reports its URL in `server.json`; this helper waits
for that file (with the child's pid, so a stale file is never trusted) and for
/api/health to answer, then hands out the URL and the admin token.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx


class ServerProcess:
    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None, ca: str | Path | None = None) -> None:
        self.home = Path(home)
        self.ca = ca  # the CA of a TLS server's certificate (--tls-cert)
        self.args = args
        self.env = {**os.environ, **(env or {}), "AIFACTORY_HOME": str(self.home)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "aifactory.live.api.server", "--home", str(self.home), "--port", "0", *self.args]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"server did not start in {timeout} s: {self.log_path.read_text()[-2000:]}")

    def _ready(self) -> bool:
        assert self.proc is not None
        try:
            info = json.loads((self.home / "server.json").read_text())
            if info.get("pid") != self.proc.pid:
                return False
            self.url = info["url"]
            self.token = (self.home / "token").read_text().strip()
            return httpx.get(f"{self.url}/api/health", timeout=2, verify=self._verify()).status_code == 200
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            return False

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _verify(self) -> ssl.SSLContext | bool:
        return True if self.ca is None else ssl.create_default_context(cafile=str(self.ca))

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout, verify=self._verify())

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a clean shutdown), then SIGKILL if it lingers. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill9(self) -> None:
        """Crash the server: no cleanup of any kind runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
