"""A content-addressed artifact store: every blob is named by the sha256 of its bytes.

Layout: `<root>/sha256/<first two hex>/<full hex>`. A blob is written to a temporary file
in the same directory and renamed into place, so a reader never sees half a blob and two
writers of the same content simply both land the same file.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from aifactory.atomic import atomic_file
from aifactory.core.errors import NotFound, SpecError

CHUNK = 1 << 20  # bytes read at a time while hashing


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha: str) -> Path:
        """Where the blob `sha` lives (whether or not it exists)."""
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise SpecError("sha256", f"not a sha256 hex digest: {sha!r}")
        return self.root / "sha256" / sha[:2] / sha

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def get(self, sha: str) -> Path:
        path = self.path(sha)
        if not path.is_file():
            raise NotFound(f"no artifact {sha[:12]} in {self.root}")
        return path

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            self._land(sha, lambda fh: fh.write(data))
        return sha

    def put_file(self, src: Path) -> str:
        """Copy `src` into the store; returns its sha256."""
        src = Path(src)
        if not src.is_file():
            raise SpecError("path", f"no such file: {src}")
        sha = sha256_file(src)
        if not self.exists(sha):

            def copy(fh: BinaryIO) -> None:
                with open(src, "rb") as inp:
                    shutil.copyfileobj(inp, fh)

            self._land(sha, copy)
        return sha

    def _land(self, sha: str, write: Callable[[BinaryIO], object]) -> None:
        final = self.path(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(final, mode=0o600, durable=True) as fh:
            write(fh)
