"""Token lifecycle against a real server: create with an expiry, list, revoke, rotate the admin's.
A revoked, expired or deleted token is refused on its next request, without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from aifactory.live.api.deps import CALLER_TTL_S
from aifactory.live.api.launch import ServerProcess
from aifactory.live.store import Store

from .test_cli import cli, ok, refused


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("tokens") / "home", "--gpus", "2") as srv:
        yield srv


def as_(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def make(server: ServerProcess, **body: object) -> dict:
    with server.client() as admin:
        r = admin.post("/api/tokens", json={"user": "alice", "projects": ["default"], **body})
    assert r.status_code == 201, r.text
    return r.json()


def test_a_revoked_token_is_refused_on_its_next_request(server: ServerProcess) -> None:
    made = make(server)
    with as_(server, made["token"]) as alice, server.client() as admin:
        assert alice.get("/api/me").status_code == 200  # cached now
        listed = {t["id"]: t for t in admin.get("/api/tokens").json()}
        assert listed[made["id"]]["state"] == "active" and "token" not in listed[made["id"]]
        r = admin.delete(f"/api/tokens/{made['id'][:8]}")
        assert r.status_code == 200 and [t["state"] for t in r.json()] == ["revoked"]
        assert alice.get("/api/me").status_code == 401
        assert alice.post("/api/jobs", json={"command": ["true"]}).status_code == 401
        assert {t["id"]: t["state"] for t in admin.get("/api/tokens").json()}[made["id"]] == "revoked"
        # Bad ids name the field; an unknown one is 404; a tenant may not list or revoke.
        assert admin.delete("/api/tokens/abc").status_code == 422
        assert admin.delete("/api/tokens/00000000ffff").status_code == 404
    other = make(server)
    with as_(server, other["token"]) as bob:
        assert bob.get("/api/tokens").status_code == 403
        assert bob.delete(f"/api/tokens/{other['id']}").status_code == 403


def test_an_expired_token_is_refused(server: ServerProcess) -> None:
    made = make(server, expires="1.5s")
    assert made["expires_at"] is not None
    with as_(server, made["token"]) as alice:
        assert alice.get("/api/me").status_code == 200
        time.sleep(1.7)
        assert alice.get("/api/me").status_code == 401  # the cache never outlives the expiry
    with server.client() as admin:
        assert {t["id"]: t["state"] for t in admin.get("/api/tokens").json()}[made["id"]] == "expired"
        bad = admin.post("/api/tokens", json={"user": "x", "projects": ["default"], "expires": "1e999"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "expires"


def test_a_token_deleted_from_the_database_is_refused_within_seconds(server: ServerProcess) -> None:
    made = make(server)
    with as_(server, made["token"]) as alice:
        assert alice.get("/api/me").status_code == 200
        with Store(f"sqlite:///{server.home / 'factory.db'}") as store, store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM tokens WHERE sha256 LIKE :p"), {"p": made["id"] + "%"})
        time.sleep(CALLER_TTL_S + 0.2)
        assert alice.get("/api/me").status_code == 401


def test_rotating_the_admin_token_revokes_the_old_one(server: ServerProcess) -> None:
    old = server.token
    assert ok(cli(server, "token", "rotate-admin")).startswith("new admin token")
    new = (server.home / "token").read_text().strip()
    assert new != old
    with as_(server, old) as stale, as_(server, new) as fresh:
        assert stale.get("/api/me").status_code == 401
        assert fresh.get("/api/me").json()["admin"] is True
    server.token = new  # for the tests after this one
    listed = ok(cli(server, "token", "list"))
    assert "revoked" in listed and "active" in listed
    made = ok(cli(server, "token", "create", "--user", "carol", "--project", "default", "--expires", "30d")).strip()
    with as_(server, made) as carol:
        assert carol.get("/api/me").json()["user"] == "carol"
    row = next(line for line in ok(cli(server, "token", "list")).splitlines() if "carol" in line)
    assert "active" in row
    assert "revoked" in ok(cli(server, "token", "revoke", row.split()[0]))
    refused(cli(server, "token", "revoke", "zz"), "id")
