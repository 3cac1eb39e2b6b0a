"""Listening sockets for the factory's HTTP servers (the floor's API and the model server)."""

from __future__ import annotations

import socket
from pathlib import Path

from aifactory.core.errors import SpecError


def bind_tcp(host: str, port: int, backlog: int | None = None, inheritable: bool = False) -> socket.socket:
    """A bound TCP socket; port 0 picks a free one (read it back with getsockname).

    proto=IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets that say they are
    TCP, and with Nagle on a response's body waits behind its headers for the client's
    delayed ACK (~40 ms a request). A busy or forbidden port is a SpecError naming `port`.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SpecError("port", f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if backlog is not None:
        sock.listen(backlog)
    sock.set_inheritable(inheritable)
    return sock


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def tls_files(cert: Path | None, key: Path | None) -> dict[str, str]:
    """uvicorn's ssl options for a certificate and its key (both or neither); SpecError names the
    option whose file cannot be read."""
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise SpecError("tls_cert", "--tls-cert and --tls-key go together")
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise SpecError(name, f"cannot read {path}: {exc.strerror}") from None
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def scheme(tls: bool) -> str:
    return "https" if tls else "http"


def http_url(host: str, port: int, tls: bool = False) -> str:
    return f"{scheme(tls)}://[{host}]:{port}" if ":" in host else f"{scheme(tls)}://{host}:{port}"
