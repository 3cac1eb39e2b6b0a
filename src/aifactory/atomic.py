"""Files written whole or not at all: a temporary file beside the target, then one rename.

A reader (a client finding server.json, the runner reading a step's outputs, a server loading a
checkpoint) sees the old file or the new one, never half of one. The temporary name is unique
(`mkstemp`), so two writers of one path never write into each other's file, and it is created
with O_EXCL and mode 0600 before any byte is in it, so a secret is never readable by others even
for a moment; the wanted mode is set before the rename. On any failure the temporary file is
removed and the target is as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: Path, mode: int = 0o644, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write that becomes `path` (with `mode`) when the block ends without error.

    `durable`: fsync before the rename, for content that must survive a power cut once the name
    is visible (artifacts addressed by their hash).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write `data` (text as UTF-8) to `path` as a whole file with `mode`."""
    with atomic_file(path, mode) as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
