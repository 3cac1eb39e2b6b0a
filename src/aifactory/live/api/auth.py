"""Bearer tokens: who is calling, and which projects they may act in.

The server keeps only the sha256 of each token (in the store). At first start an
admin token is made and written to `$AIFACTORY_HOME/token` with mode 0600; the
admin creates per-user tokens bound to projects through `POST /api/tokens`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aifactory.atomic import write_atomic
from aifactory.core.errors import AifactoryError
from aifactory.live.store import Store, TokenInfo

ALL_PROJECTS = "*"


class Unauthorized(AifactoryError):
    """No token, or a token the server does not know (401)."""


class Forbidden(AifactoryError):
    """A known token acting outside its projects or rights (403)."""


@dataclass(frozen=True, slots=True)
class Caller:
    user: str
    admin: bool
    projects: frozenset[str] | None  # None: every project

    def may_use(self, project: str) -> bool:
        return self.admin or self.projects is None or project in self.projects

    def require_project(self, project: str) -> None:
        if not self.may_use(project):
            raise Forbidden(f"user {self.user!r} may not use project {project!r}")

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden(f"user {self.user!r} is not an admin")

    def visible(self, projects: Iterable[str]) -> list[str] | None:
        """The projects this caller may see among `projects` (None: no restriction)."""
        if self.admin or self.projects is None:
            return None
        return [p for p in projects if p in self.projects]


def caller_from_info(info: TokenInfo) -> Caller:
    """Turn the store's TokenInfo into a Caller."""
    projects = info.projects
    scope = None if projects in (None, ALL_PROJECTS) or ALL_PROJECTS in projects else frozenset(projects)
    return Caller(user=info.user, admin=bool(info.is_admin), projects=scope)


def bearer(header: str | None) -> str:
    """The token in an `Authorization: Bearer <token>` header."""
    if not header:
        raise Unauthorized("missing Authorization header (Bearer token)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by the owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text + "\n", mode=0o600)


def ensure_admin_token(store: Store, token_path: Path, user: str) -> str:
    """The admin token in `token_path`, made (and registered, hashed) if missing or unknown."""
    if token_path.is_file():
        token = token_path.read_text().strip()
        if token and store.token_info(token) is not None:
            return token
    token = secrets.token_urlsafe(32)
    store.add_token(token, user, True, ALL_PROJECTS)
    write_secret(token_path, token)
    return token


def new_token() -> str:
    return secrets.token_urlsafe(32)
