"""A hostile tenant against a real server with full isolation (root, cgroups): every attack fails,
the victim's job runs on. Each attack is a job of alice's that prints BREACH if it got through,
BLOCKED if it did not; bob's job is the victim.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.live.api.launch import ServerProcess
from aifactory.live.cgroups import detect

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or detect() is None or shutil.which("useradd") is None,
    reason="full isolation needs root, useradd and a writable cgroup hierarchy",
)

SECRET = "server-secret-" + uuid.uuid4().hex
VICTIM = "victim-" + uuid.uuid4().hex[:8]
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def place() -> Iterator[Path]:
    """A world-traversable directory, so that only the factory's own modes keep jobs out."""
    root = Path(f"/tmp/aif-hostile-{uuid.uuid4().hex[:8]}")
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(place: Path) -> Iterator[ServerProcess]:
    args = ["--gpus", "4", "--cpus-per-node", "8", "--memory-per-node", "8GiB", "--isolation", "full"]
    srv = ServerProcess(place / "home", *args, env={"PGPASSWORD": SECRET, "AIFACTORY_ISOLATION": ""})
    with srv:
        with srv.client() as admin:
            for project in ("a", "b"):
                assert admin.put(f"/api/projects/{project}", json={"quota": 2}).status_code == 200
        yield srv
    # Nothing of the module's jobs may be left behind.
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if VICTIM.encode() in cmdline:
            os.kill(int(entry.name), 9)


def token(srv: ServerProcess, user: str, project: str) -> httpx.Client:
    with srv.client() as admin:
        r = admin.post("/api/tokens", json={"user": user, "projects": [project]})
    assert r.status_code == 201, r.text
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=30)


def submit(client: httpx.Client, script: str, **fields: Any) -> int:
    project = client.get("/api/me").json()["projects"][0]
    body = {"command": ["/bin/sh", "-c", script], "gpus": 0, "cpus": 0.5, "workdir": "/", "project": project}
    body |= fields
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def wait(client: httpx.Client, job_id: int, states: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def log(srv: ServerProcess, job_id: int) -> str:
    with srv.client() as admin:
        return admin.get(f"/api/jobs/{job_id}/logs").text


def attempt(name: str, command: str) -> str:
    """Shell that prints BREACH name when `command` succeeds, BLOCKED name when it fails."""
    return f"if {command} >/dev/null 2>&1; then echo 'BREACH {name}'; else echo 'BLOCKED {name}'; fi\n"


def run_attacks(server: ServerProcess, place: Path) -> dict[str, bool]:
    """Every attack of alice's against the server and bob's running job: name -> blocked.
    Raises if the victim's job did not run on untouched (also used by benchmarks/floor_hostile.py)."""
    home = server.home
    alice, bob = token(server, "alice", "a"), token(server, "bob", "b")
    blocked: dict[str, bool] = {}
    with alice, bob:
        victim = submit(
            bob,
            f"echo bob-private > $HOME/data; echo {VICTIM}; sleep 120; echo done # {VICTIM}",
            name=VICTIM,
        )
        wait(bob, victim, {"running"})
        deadline = time.monotonic() + 20
        while VICTIM not in log(server, victim):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with server.client() as admin:
            victim_row = admin.get(f"/api/jobs/{victim}").json()
        server_pid = server.proc.pid if server.proc else 0
        scratch_root = Path(os.environ.get("TMPDIR", "/tmp"))
        victim_scratch = next(scratch_root.glob(f"aifactory-*/job-{victim}"))

        script = "".join(
            [
                'test "$(id -u)" != 0 && echo "NOT ROOT $(id -un)"\n',
                attempt("read-admin-token", f"cat {home}/token"),
                attempt("list-home", f"ls {home}"),
                attempt("read-database", f"cat {home}/factory.db"),
                attempt("write-database", f"sh -c 'echo x >> {home}/factory.db'"),
                attempt("read-victim-log", f"cat {home}/logs/job-{victim}.log"),
                attempt("read-victim-scratch", f"cat {victim_scratch}/data"),
                attempt("read-server-environment", f"grep -q {SECRET} /proc/{server_pid}/environ"),
                attempt("inherit-server-environment", f"sh -c 'env | grep -q {SECRET}'"),
                # Every process of the victim's, by its command line: kill each.
                attempt(
                    "signal-victim",
                    # (the marker split in two: this shell's own command line must not match)
                    "sh -c 'hit=1; v=vic; for d in /proc/[0-9]*; do "
                    f'grep -q "${{v}}{VICTIM[3:]}" $d/cmdline 2>/dev/null && kill -9 "${{d#/proc/}}" && hit=0; '
                    "done; exit $hit'",
                ),
            ]
        )
        attacker = submit(alice, script)
        done = wait(alice, attacker, TERMINAL)
        out = log(server, attacker)
        assert done["state"] == "succeeded", (done, out)
        for line in out.splitlines():
            verdict, _, name = line.partition(" ")
            if verdict in ("BLOCKED", "BREACH"):
                blocked[name] = verdict == "BLOCKED"
        blocked["run-as-root-or-shared-account"] = "NOT ROOT aif-alice" in out

        # Memory: a job that asked for 64 MiB and takes 400 is killed; the victim runs on.
        hog = submit(
            alice,
            "exec /usr/bin/python3 -c 'x = bytearray(400 << 20); print(\"BREACH memory\")'",
            memory="64MiB",
        )
        ended = wait(alice, hog, TERMINAL)
        blocked["exceed-memory"] = ended["state"] == "failed" and "BREACH" not in log(server, hog)
        if detect() == "v1":
            blocked["open-other-gpu"] = probe_devices(server, place)

        # The victim is untouched: still running, its own log intact.
        assert wait(bob, victim, {"running"})["attempts"] == victim_row["attempts"]
        assert log(server, victim) == f"{VICTIM}\n"
        assert bob.post(f"/api/jobs/{victim}/cancel").status_code == 200
        assert wait(bob, victim, TERMINAL)["state"] == "cancelled"
    return blocked


def test_a_hostile_tenant_cannot_reach_the_server_or_another_tenant(server: ServerProcess, place: Path) -> None:
    blocked = run_attacks(server, place)
    assert len(blocked) >= 11 and all(blocked.values()), blocked


def probe_devices(server: ServerProcess, place: Path) -> bool:
    """Fake NVIDIA device nodes (major 195, minor = GPU index): the job's own opens as far as the
    missing driver lets it (ENXIO), every other is refused by the devices cgroup (EPERM)."""
    dev = place / "dev"
    dev.mkdir(mode=0o755, exist_ok=True)
    for i in range(4):
        node = dev / f"nvidia{i}"
        if not node.exists():
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(195, i))
        os.chmod(node, 0o666)
    probe = (
        "import errno, os\n"
        "mine = {int(g) for g in os.environ['CUDA_VISIBLE_DEVICES'].split(',')}\n"
        "for i in range(4):\n"
        "    try:\n"
        f"        os.close(os.open('{dev}/nvidia%d' % i, os.O_RDWR))\n"
        "        code = 0\n"
        "    except OSError as e:\n"
        "        code = e.errno\n"
        "    allowed = code != errno.EPERM\n"
        "    print(('BREACH' if allowed and i not in mine else 'BLOCKED' if i not in mine else 'OWN'), i, code)\n"
    )
    alice = token(server, "alice", "a")
    with alice:
        body = {"command": ["/usr/bin/python3", "-c", probe], "gpus": 1, "workdir": "/", "project": "a"}
        r = alice.post("/api/jobs", json=body)
        assert r.status_code == 201, r.text
        done = wait(alice, r.json()["id"], TERMINAL)
    out = log(server, done["id"])
    assert done["state"] == "succeeded", (done, out)
    own = [line for line in out.splitlines() if line.startswith("OWN")]
    # ENXIO (6) for its own: the cgroup let it through to the (absent) driver.
    return "BREACH" not in out and out.count("BLOCKED") == 3 and len(own) == 1 and own[0].split()[2] == "6"


def test_a_job_opens_only_its_own_gpus(server: ServerProcess, place: Path) -> None:
    if detect() != "v1":
        pytest.skip("the device rule is enforced on cgroup v1 only")
    assert probe_devices(server, place)


def test_nodes_and_health_say_the_isolation_in_force(server: ServerProcess) -> None:
    with server.client() as admin:
        nodes = admin.get("/api/nodes").json()
    assert {n["isolation"] for n in nodes} == {"full"}
    assert "isolation: full" in server.log_path.read_text()
