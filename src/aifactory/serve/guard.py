"""ASGI middleware in front of the serving app: body size limit (413) and bearer-token auth (401).

Tokens: a static one (`--token-file`, e.g. the factory's `$AIFACTORY_HOME/token`) and/or every
token the floor knows (`--factory-tokens`: a `TokenCheck` from `aifactory.live.tokens`, the
floor's one interface to its tokens).

Plain ASGI rather than Starlette's BaseHTTPMiddleware: it sits on every request of the hot
path and must cost microseconds. A body without Content-Length (chunked) is read here up to
the limit and replayed to the app.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/v1/health"})  # liveness probes need no token
TokenCheck = Callable[[str], bool]


def static_token(expected: str) -> TokenCheck:
    """Accept exactly `expected` (compared in constant time)."""
    want = expected.encode()
    return lambda token: hmac.compare_digest(token.encode(), want)


def any_of(checks: list[TokenCheck]) -> TokenCheck | None:
    """One check accepting what any of `checks` accepts; None (no auth) when there are none."""
    if not checks:
        return None
    return lambda token: any(check(token) for check in checks)


class Guard:
    """Rejects oversized bodies with 413 and, when a token is set, requests without it with 401."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, auth: TokenCheck | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.auth is not None and scope["path"] not in OPEN_PATHS:
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token or not self.auth(token.strip()):
                await _reply(send, 401, "missing or invalid token: send 'Authorization: Bearer <token>'")
                return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body_bytes:
                await _reply(
                    send, 413, f"body of {length.decode(errors='replace')} bytes exceeds {self.max_body_bytes}"
                )
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read_capped(receive)
            if body is None:
                await _reply(send, 413, f"body exceeds {self.max_body_bytes} bytes")
                return
            await self.app(scope, _replay(body, receive), send)
            return
        await self.app(scope, receive, send)

    async def _read_capped(self, receive: Receive) -> bytes | None:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
