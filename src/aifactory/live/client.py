"""The HTTP client of the factory's API (the CLI's only way to the server).

It finds the server and token through `aifactory.config.connection`: `AIFACTORY_URL` and
`AIFACTORY_TOKEN`, else the user's `config.toml` (`aifactory login`), else the local server's
`server.json` (written by `aifactory up`) and admin `token`.
Every failure becomes an AifactoryError with one readable line: the server's
message naming the field for bad input, or where it looked for an unreachable server.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter

from aifactory.config import connection, read_config, resolve_home
from aifactory.core.errors import AifactoryError, SpecError
from aifactory.live.wire import (
    PAGE_MAX,
    CallerOut,
    DeletedOut,
    DepartmentOut,
    DryRunOut,
    EventsOut,
    JobOut,
    NodeOut,
    ProjectOut,
    QuotaOut,
    TokenInfoOut,
    TokenOut,
    UsageReportOut,
)


class ServerUnreachable(AifactoryError):
    """No server answers at the URL the client found."""


class ApiError(AifactoryError):
    """The server refused a request; `status` is the HTTP status, the message is the server's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_message(response: httpx.Response) -> str:
    """One line from an error body: `field: message` for each field the server named."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        parts = []
        for item in detail:
            loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
            parts.append(f"{'.'.join(loc)}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        return "; ".join(parts)
    if isinstance(detail, str):
        return detail
    return f"HTTP {response.status_code} {response.reason_phrase}"


CA_ENV = "AIFACTORY_CA"
JOB_PAGE = TypeAdapter(list[JobOut])  # a page parsed from its JSON bytes at once (pydantic-core)


def tls_context(ca: str | Path | None) -> ssl.SSLContext | bool:
    """Verification for HTTPS: the system's CAs, or the one CA file given (`--ca`, config `ca`)."""
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise SpecError("ca", f"cannot use {ca} as a CA file: {exc}") from None


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 30.0, ca: str | Path | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=tls_context(ca))

    @classmethod
    def from_env(cls, home: Path | None = None, timeout: float = 30.0) -> Client:
        """The server and token `aifactory.config.connection` finds for this home."""
        found = connection(resolve_home(home))
        if found.url is None:
            raise ServerUnreachable(
                f"no factory server found (looked at {found.looked}): start one with `aifactory up`, "
                "or connect with `aifactory login URL`"
            )
        ca = os.environ.get(CA_ENV) or read_config(resolve_home(home)).ca
        return cls(found.url, found.token, timeout, ca)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach the factory at {self.url} ({type(exc).__name__}: {exc})") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, error_message(response))
        return response

    def me(self) -> CallerOut:
        """Who this client's token acts for."""
        return CallerOut.model_validate(self._request("GET", "/api/me").json())

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/api/health").json()

    def submit(self, body: dict[str, Any]) -> JobOut:
        return JobOut.model_validate(self._request("POST", "/api/jobs", json=body).json())

    def jobs(
        self,
        project: str | None = None,
        state: str | list[str] | None = None,
        user: str | None = None,
        limit: int | None = None,
    ) -> list[JobOut]:
        """Jobs newest first, every page (or the newest `limit`); a list of states selects any of them."""
        params: dict[str, Any] = {k: v for k, v in {"project": project, "state": state, "user": user}.items() if v}
        params["limit"] = min(limit or PAGE_MAX, PAGE_MAX)  # the largest pages: fewest round trips
        response = self._request("GET", "/api/jobs", params=params)
        out = JOB_PAGE.validate_json(response.content)
        # The next page's URL carries every filter and the cursor (passing params would replace them).
        while (nxt := response.links.get("next", {}).get("url")) and (limit is None or len(out) < limit):
            response = self._request("GET", nxt)
            out.extend(JOB_PAGE.validate_json(response.content))
        return out if limit is None else out[:limit]

    def job(self, job_id: int) -> JobOut:
        return JobOut.model_validate(self._request("GET", f"/api/jobs/{job_id}").json())

    def array(self, array_id: int) -> list[JobOut]:
        return [JobOut.model_validate(j) for j in self._request("GET", f"/api/arrays/{array_id}").json()]

    def dry_run(self, body: dict[str, Any]) -> DryRunOut:
        return DryRunOut.model_validate(self._request("POST", "/api/jobs/dry-run", json=body).json())

    def job_action(self, job_id: int, action: str) -> JobOut:
        """hold, release or requeue."""
        return JobOut.model_validate(self._request("POST", f"/api/jobs/{job_id}/{action}").json())

    def update_job(self, job_id: int, **fields: Any) -> JobOut:
        return JobOut.model_validate(self._request("PATCH", f"/api/jobs/{job_id}", json=fields).json())

    def cancel(self, job_id: int) -> JobOut:
        return JobOut.model_validate(self._request("POST", f"/api/jobs/{job_id}/cancel").json())

    def logs(self, job_id: int, tail: int | None = None) -> str:
        params = {"tail": tail} if tail is not None else {}
        return self._request("GET", f"/api/jobs/{job_id}/logs", params=params).text

    def stream_log(
        self, job_id: int, tail: int | None = None, follow: bool = False, rank: int | None = None
    ) -> Iterator[bytes]:
        """The log in chunks as the server sends them; `follow`: until the job has ended and its log
        is drained; `rank`: one rank of a multi-node gang (default: all, lines prefixed)."""
        params: dict[str, Any] = {"follow": "true"} if follow else {}
        if tail is not None:
            params["tail"] = tail
        if rank is not None:
            params["rank"] = rank
        try:
            with self._http.stream("GET", f"/api/jobs/{job_id}/logs", params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, error_message(response))
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"lost the factory at {self.url} ({type(exc).__name__}: {exc})") from None

    def drain(self, node: str, drained: bool = True) -> NodeOut:
        """Admin: take a node out of scheduling (its jobs run on), or give it back."""
        verb = "drain" if drained else "resume"
        return NodeOut.model_validate(self._request("POST", f"/api/nodes/{node}/{verb}").json())

    def nodes(self) -> list[NodeOut]:
        return [NodeOut.model_validate(n) for n in self._request("GET", "/api/nodes").json()]

    def projects(self) -> list[ProjectOut]:
        return [ProjectOut.model_validate(p) for p in self._request("GET", "/api/projects").json()]

    def set_project(self, name: str, **fields: Any) -> ProjectOut:
        """Add or change a project (admin): only the fields given (None clears limit, pool, ...)."""
        return ProjectOut.model_validate(self._request("PATCH", f"/api/projects/{name}", json=fields).json())

    def delete_project(self, name: str, force: bool = False) -> DeletedOut:
        r = self._request("DELETE", f"/api/projects/{name}", params={"force": force})
        return DeletedOut.model_validate(r.json())

    def delete_department(self, name: str, force: bool = False) -> DeletedOut:
        r = self._request("DELETE", f"/api/departments/{name}", params={"force": force})
        return DeletedOut.model_validate(r.json())

    def quota(self) -> QuotaOut:
        return QuotaOut.model_validate(self._request("GET", "/api/quota").json())

    def events(self, job: int | None = None, since: float | None = None, limit: int = 200) -> EventsOut:
        params: dict[str, Any] = {"limit": limit}
        if job is not None:
            params["job"] = job
        if since is not None:
            params["since"] = since
        return EventsOut.model_validate(self._request("GET", "/api/events", params=params).json())

    def usage(self, since: float, until: float | None = None, by: str = "project") -> UsageReportOut:
        params: dict[str, Any] = {"since": since, "by": by}
        if until is not None:
            params["until"] = until
        return UsageReportOut.model_validate(self._request("GET", "/api/usage", params=params).json())

    def departments(self) -> list[DepartmentOut]:
        return [DepartmentOut.model_validate(d) for d in self._request("GET", "/api/departments").json()]

    def set_department(self, name: str, **fields: Any) -> DepartmentOut:
        """Add or change a department (admin): quota, weight, limit."""
        return DepartmentOut.model_validate(self._request("PATCH", f"/api/departments/{name}", json=fields).json())

    def create_token(self, user: str, projects: list[str], admin: bool = False, expires: str | None = None) -> TokenOut:
        body: dict[str, Any] = {"user": user, "projects": projects, "admin": admin}
        if expires is not None:
            body["expires"] = expires
        return TokenOut.model_validate(self._request("POST", "/api/tokens", json=body).json())

    def tokens(self) -> list[TokenInfoOut]:
        return [TokenInfoOut.model_validate(t) for t in self._request("GET", "/api/tokens").json()]

    def revoke_token(self, token_id: str) -> list[TokenInfoOut]:
        return [TokenInfoOut.model_validate(t) for t in self._request("DELETE", f"/api/tokens/{token_id}").json()]

    def rotate_admin(self) -> TokenOut:
        return TokenOut.model_validate(self._request("POST", "/api/tokens/rotate-admin").json())
