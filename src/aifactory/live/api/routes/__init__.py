"""Route handlers, one module per resource; each handler is a few lines calling the service."""

from __future__ import annotations
