"""The server as a plain process (how the floor runs it as a job) and `aifactory serve` on bad input."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from aifactory.cli import main as cli_main
from aifactory.line.digits_model import DigitsConfig, build_model, save_checkpoint
from aifactory.line.registry import Registry
from aifactory.serve.feedback import FeedbackLog
from aifactory.serve.server import main as server_main


def champion(home: Path) -> Registry:
    registry = Registry(home)
    torch.manual_seed(0)
    cfg = DigitsConfig(widths=(4, 8), hidden=16)
    registry.register("digits", save_checkpoint(home / "m.pt", build_model(cfg), cfg, {}), {}, {})
    registry.set_alias("digits", "champion", 1)
    return registry


def test_server_process_serves_with_a_token_and_stops_cleanly(home: Path) -> None:
    champion(home)
    token = home / "token"
    token.write_text("tok-123\n")
    ready = home / "ready.json"
    cmd = [sys.executable, "-m", "aifactory.serve.server", "--model", "digits@champion", "--home", str(home)]
    proc = subprocess.Popen(
        [*cmd, "--port", "0", "--ready-file", str(ready), "--token-file", str(token), "--max-batch", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "server did not get ready"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid and info["version"] == 1
        assert info["settings"]["batch"]["max_batch"] == 4 and info["settings"]["token"] == "set"
        assert "tok-123" not in ready.read_text()  # the effective settings, never the secret
        headers = {"Authorization": "Bearer tok-123"}
        x = np.full((2, 64), 8.0).tolist()
        for _ in range(3):
            r = httpx.post(f"{info['url']}/v1/models/digits/predict", json={"inputs": x}, headers=headers)
            assert r.status_code == 200 and r.json()["version"] == 1
        assert httpx.post(f"{info['url']}/api/predict", json={"inputs": x}).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises SIGTERM after a graceful stop
    assert f"serving digits@champion (v1) at {info['url']}" in out
    assert FeedbackLog(home).count() == 6  # every answered row was logged before exit


def test_cli_unknown_alias_exits_2_with_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    champion(home)
    monkeypatch.setattr(sys, "argv", ["aifactory", "serve", "digits@champoin", "--home", str(home), "--port", "0"])
    with pytest.raises(SystemExit) as exited:
        cli_main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean 'champion'" in err and "Traceback" not in err


def test_bad_options_exit_2_naming_the_option(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    champion(home)
    cases = [
        (["--max-batch", "0"], "max_batch"),
        (["--max-wait-ms", "-5"], "max_wait_ms"),
        (["--inline-below-ms", "-1"], "inline_below_ms"),
        (["--inline-below-ms", "nan"], "inline_below_ms"),
        (["--token-file", str(home / "missing")], "token_file"),
        (["--port", "70000"], "port"),
        (["--model", "cats@champion"], "cats"),
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        cases.append((["--port", str(taken.getsockname()[1])], "cannot listen"))
        for args, expected in cases:
            assert server_main(["--home", str(home), *args]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: ") and expected in err, err


def test_aifactory_serve_and_the_server_module_share_one_option_list(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aifactory.serve.server import serve_parser

    flags = {opt for a in serve_parser("x")._actions for opt in a.option_strings}
    monkeypatch.setattr(sys, "argv", ["aifactory", "serve", "--help"])
    with pytest.raises(SystemExit) as exited:
        cli_main()
    shown = capsys.readouterr().out
    assert exited.value.code == 0 and all(flag in shown for flag in flags), shown
    monkeypatch.setattr(sys, "argv", ["aifactory", "serve", "--bogus"])
    with pytest.raises(SystemExit) as exited:
        cli_main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "--bogus" in err and len(err.strip().splitlines()) == 1
