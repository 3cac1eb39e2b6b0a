"""Bearer tokens never cross a network in clear: HTTPS with a certificate the test makes (trustme),
a client that verifies it, and servers that refuse plain HTTP (up) or no token (serve) beyond
loopback unless told --insecure."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from aifactory.core.errors import SpecError
from aifactory.live.api.launch import ServerProcess
from aifactory.serve.server import parse_args

from .test_cli import cli, ok, refused


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    where = tmp_path_factory.mktemp("ca")
    authority.cert_pem.write_to_path(str(where / "ca.pem"))
    return authority, where


@pytest.fixture(scope="module")
def server(ca: tuple[trustme.CA, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    authority, where = ca
    leaf = authority.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(where / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(where / "key.pem"))
    args = ["--gpus", "1", "--tls-cert", str(where / "cert.pem"), "--tls-key", str(where / "key.pem")]
    with ServerProcess(tmp_path_factory.mktemp("tls") / "home", *args, ca=where / "ca.pem") as srv:
        yield srv


def test_the_server_speaks_https_and_the_cli_verifies_it(server: ServerProcess, ca: tuple[trustme.CA, Path]) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    with server.client() as http:
        assert http.get("/api/me").json()["admin"] is True
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/api/health")  # not trusted without the CA
    plain = server.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/api/health", timeout=5).raise_for_status()
    # The CLI: verified with --ca (or config.toml's ca); refused in one line without it.
    assert "node0" in ok(cli(server, "--ca", str(ca[1] / "ca.pem"), "nodes"))
    refused(cli(server, "nodes"), "certificate")


def test_up_refuses_plain_http_beyond_loopback(tmp_path: Path) -> None:
    up = [sys.executable, "-m", "aifactory.live.api.server", "--home", str(tmp_path), "--gpus", "1"]
    done = subprocess.run([*up, "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--tls-cert" in done.stderr and "--insecure" in done.stderr, done.stderr
    assert not (tmp_path / "server.json").exists()


def test_serve_refuses_no_token_beyond_loopback(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="--token-file"):
        parse_args(["digits@champion", "--host", "0.0.0.0", "--home", str(tmp_path)])
    parse_args(["digits@champion", "--host", "0.0.0.0", "--home", str(tmp_path), "--insecure"])
    token = tmp_path / "t"
    token.write_text("secret\n")
    config, _ = parse_args(["digits@champion", "--host", "0.0.0.0", "--token-file", str(token)])
    assert config.token == "secret"
    parse_args(["digits@champion", "--home", str(tmp_path)])  # loopback: no token needed
    with pytest.raises(SpecError, match="tls"):
        parse_args(["digits@champion", "--tls-cert", str(token)])
