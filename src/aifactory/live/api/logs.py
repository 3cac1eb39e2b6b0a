"""Reading a job's log file: the last N lines, or follow it until the job is over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aifactory.live.service import FactoryService

POLL_S = 0.1  # how often a followed log is checked for new bytes
CHUNK = 64 << 10
TAIL_WINDOW = 8 << 20  # a tail looks at most at the last 8 MiB of a log


def _tail_offset(path: Path, lines: int | None) -> int:
    """Byte offset where the last `lines` lines start (0: the whole file)."""
    if lines is None or not path.is_file():
        return 0
    size = path.stat().st_size
    if lines == 0:
        return size
    start = max(0, size - TAIL_WINDOW)
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(size - start)
    cut = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return start
    return start + cut + 1


async def read_log(path: Path, lines: int | None) -> AsyncIterator[bytes]:
    """The log as it is now (its last `lines` lines), in chunks: a big log is never held in memory."""
    if not path.is_file():
        return
    with path.open("rb") as f:
        end = f.seek(0, 2)
        offset = f.seek(_tail_offset(path, lines))
        while offset < end:
            chunk = f.read(min(CHUNK, end - offset))
            if not chunk:
                return
            offset += len(chunk)
            yield chunk


def _terminal(service: FactoryService, job_id: int) -> bool:
    # In memory, not the database: the core forgets a job once it has ended.
    return not service.is_active(job_id)


async def follow_log(service: FactoryService, job_id: int, path: Path, lines: int | None) -> AsyncIterator[bytes]:
    """Yield the log as it grows; stop once the job is terminal and nothing more is left to read."""
    offset = _tail_offset(path, lines)
    while True:
        # Read the state before the bytes: a job that ended before this read has written all it will.
        done = _terminal(service, job_id)
        chunk = b""
        if path.is_file():
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read(CHUNK)
        if chunk:
            offset += len(chunk)
            yield chunk
            continue
        if done:
            return
        await asyncio.sleep(POLL_S)


async def ranks_log(
    service: FactoryService, job_id: int, paths: list[Path], lines: int | None, follow: bool
) -> AsyncIterator[bytes]:
    """A multi-node gang's logs together, each line prefixed `[rank k] `: as they are now (rank by
    rank), or followed (lines in the order they are seen) until the job has ended and all are drained."""
    offsets = [_tail_offset(p, lines) for p in paths]
    partial = [b""] * len(paths)
    while True:
        done = follow and _terminal(service, job_id)
        got = False
        for k, path in enumerate(paths):
            if not path.is_file():
                continue
            with path.open("rb") as f:
                f.seek(offsets[k])
                chunk = f.read(CHUNK)
            if not chunk:
                continue
            got = True
            offsets[k] += len(chunk)
            *whole, partial[k] = (partial[k] + chunk).split(b"\n")
            if whole:
                yield b"".join(b"[rank %d] %s\n" % (k, line) for line in whole)
        if got:
            continue
        if not follow or done:
            tails = [b"[rank %d] %s\n" % (k, rest) for k, rest in enumerate(partial) if rest]
            if tails:
                yield b"".join(tails)
            return
        await asyncio.sleep(POLL_S)
