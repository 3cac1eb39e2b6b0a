"""One exception root for the package, a few grouped subclasses.

The offending value is always in the message; the API maps these to status codes
(SpecError -> 422, NotFound/UnknownName -> 404, InvalidTransition -> 409).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AifactoryError(Exception):
    """Root of every error the package raises on purpose."""


class SpecError(AifactoryError, ValueError):
    """Bad input: names the field and says what is wrong with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(AifactoryError, LookupError):
    """A job, project, node or other named thing does not exist."""


class UnknownName(NotFound):
    """A name looked up in a registry; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known_sorted = sorted(known)
        close = difflib.get_close_matches(name, known_sorted, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {', '.join(known_sorted)})")
        self.kind = kind
        self.name = name
        self.known = known_sorted


class InvalidTransition(AifactoryError):
    """A job was asked to move along an edge the state machine does not have."""
