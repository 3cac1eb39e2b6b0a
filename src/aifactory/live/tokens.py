"""The floor's tokens as a check other servers use: `store_tokens(home)` accepts every token the
store under `home` knows (per-user tokens from `aifactory token create`). The model server takes
it as a plain `token -> bool` and knows nothing of the store behind it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from aifactory.live.settings import LiveSettings
from aifactory.live.store.repository import Store


class StoreTokens:
    """Accept the tokens the floor's store at `home` knows; answers are cached for `ttl_s` seconds
    so that a hot path does not hit the database."""

    def __init__(self, home: Path, ttl_s: float = 5.0) -> None:
        self.store = Store(LiveSettings(home=Path(home)).database_url).open()
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, token: str) -> bool:
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and now - hit[1] < self.ttl_s:
            return hit[0]
        ok = self.store.token_info(token) is not None
        with self._lock:
            if len(self._cache) > 10_000:  # wrong tokens must not grow it without bound
                self._cache.clear()
            self._cache[token] = (ok, now)
        return ok
