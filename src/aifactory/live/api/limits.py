"""Refuse request bodies over MAX_BODY_BYTES before the app sees them (413).

The declared Content-Length is checked first; the streamed size is counted too
(chunked bodies, lying headers). A refused body is read and thrown away up to
DRAIN_BYTES so the client gets its 413 instead of a reset connection; nothing of
it reaches a handler, so nothing of it is stored.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aifactory.live.wire import MAX_BODY_BYTES

DRAIN_BYTES = 64 << 20  # past this, a refused body is not drained: the connection just closes


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            if declared <= DRAIN_BYTES:
                await _drain(receive, DRAIN_BYTES)
            await _refuse(send, self.limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                if more_body(message):
                    await _drain(receive, DRAIN_BYTES - size)
                await _refuse(send, self.limit)
                return
            chunks.append(body)
            more = more_body(message)
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def more_body(message: Message) -> bool:
    return bool(message.get("more_body", False))


async def _drain(receive: Receive, budget: int) -> None:
    """Read and discard the rest of a body, at most `budget` bytes."""
    while budget > 0:
        message = await receive()
        budget -= len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not more_body(message):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body too large: the limit is {limit} bytes"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
