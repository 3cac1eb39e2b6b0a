"""The factory's HTTP API: FastAPI app, token auth, thin route handlers over FactoryService."""

from __future__ import annotations
