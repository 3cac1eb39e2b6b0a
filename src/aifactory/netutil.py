"""Listening sockets for the factory's HTTP servers (the floor's API and the model server)."""

from __future__ import annotations

import socket

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
