"""The floor CLI as a user runs it: `aifactory ...` subprocesses against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifactory.live.api.launch import ServerProcess

from .conftest import EXECUTORS, RAY_LOOPBACK, ray_cluster

PY = sys.executable
AIFACTORY = [PY, "-c", "from aifactory.cli import main; main()"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("cli") / "home", "--gpus", "4") as srv:
        yield srv


@pytest.fixture(scope="module", params=EXECUTORS)
def floor(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One node of 4 GPUs called node0, on the local executor or on a Ray cluster: what a user
    sees must not depend on which runs the jobs."""
    if request.param == "local":
        yield request.getfixturevalue("server")
        return
    pytest.importorskip("ray")
    with ray_cluster({"node0": 4}) as c:
        home = tmp_path_factory.mktemp("cli-ray") / "home"
        with ServerProcess(home, "--executor", "ray", "--ray-address", c.address, env=RAY_LOOPBACK) as srv:  # type: ignore[attr-defined]
            yield srv


def cli(
    server: ServerProcess, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("AIFACTORY_URL", "AIFACTORY_TOKEN")}
    full_env = {**base, "AIFACTORY_HOME": str(server.home), "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    return subprocess.run([*AIFACTORY, *args], env=full_env, capture_output=True, text=True, timeout=60, cwd=cwd)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit code 2, one line on stderr starting `error:`, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    line = result.stderr.strip()
    assert line.startswith("error:") and "\n" not in line, line
    for word in words:
        assert word in line, line
    return line


def wait_state(server: ServerProcess, job_id: int, states: set[str], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    with server.client() as http:
        while True:
            job = http.get(f"/api/jobs/{job_id}").json()
            if job["state"] in states or time.monotonic() > deadline:
                assert job["state"] in states, job
                return job
            time.sleep(0.05)


def test_submit_jobs_show_logs(floor: ServerProcess, tmp_path: Path) -> None:
    code = "import os; print('hi from', os.getcwd())"
    out = ok(cli(floor, "submit", "-q", "--gpus", "2", "--name", "greet", "--", PY, "-c", code, cwd=tmp_path))
    job_id = int(out.strip())
    wait_state(floor, job_id, {"succeeded"})
    table = ok(cli(floor, "jobs", "--all"))
    (row,) = [line for line in table.splitlines() if line.split()[:2] == [str(job_id), "greet"]]
    assert "default" in row and "succeeded" in row and "node0:" in row
    shown = ok(cli(floor, "show", str(job_id)))
    assert "succeeded" in shown and "exit code" in shown and "queued" in shown and "running" in shown
    assert ok(cli(floor, "logs", str(job_id))) == f"hi from {tmp_path}\n"  # it ran where it was submitted


def test_queued_job_shows_why_it_waits_and_cancel(floor: ServerProcess) -> None:
    code = "import time; print('up', flush=True); time.sleep(30)"
    blocker = int(ok(cli(floor, "submit", "-q", "--gpus", "4", "--", PY, "-c", code)))
    wait_state(floor, blocker, {"running"})
    with floor.client() as http:  # its process has started: the cancel meets a live job
        while http.get(f"/api/jobs/{blocker}/logs").text != "up\n":
            time.sleep(0.05)
    waiting = int(ok(cli(floor, "submit", "-q", "--gpus", "1", "--", "true")))
    table = ok(cli(floor, "jobs"))
    (row,) = [line for line in table.splitlines() if line.split()[:1] == [str(waiting)]]
    assert "queued" in row and "needs 1 GPUs" in row
    nodes = ok(cli(floor, "nodes"))
    assert nodes.count(f"job {blocker}") == 4
    assert "running" in ok(cli(floor, "cancel", str(blocker)))
    assert wait_state(floor, blocker, {"cancelled"})["exit_code"] == -15
    wait_state(floor, waiting, {"succeeded"})
    refused(cli(floor, "cancel", str(blocker)), "already")


def test_follow_prints_the_log_as_it_grows(floor: ServerProcess) -> None:
    code = "import time\nfor i in range(3):\n    print('tick', i, flush=True); time.sleep(0.2)"
    job_id = int(ok(cli(floor, "submit", "-q", "--", PY, "-c", code)))
    assert ok(cli(floor, "logs", "-f", str(job_id))) == "tick 0\ntick 1\ntick 2\n"


def test_submit_job_yaml(floor: ServerProcess, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    (tmp_path / "run").mkdir()
    code = "import os; print(os.environ['SEED'], os.getcwd())"
    spec.write_text(f'command: {PY} -c "{code}"\ngpus: 1\ntime-limit: 1h\nworkdir: run\nenv: {{SEED: "7"}}\n')
    job_id = int(ok(cli(floor, "submit", "-q", str(spec))))
    done = wait_state(floor, job_id, {"succeeded", "failed"})
    assert (done["state"], done["spec"]["time_limit_s"]) == ("succeeded", 3600)
    assert ok(cli(floor, "logs", str(job_id))) == f"7 {tmp_path / 'run'}\n"  # workdir: relative to the file


def test_projects_and_tokens(server: ServerProcess) -> None:
    assert "default" in ok(cli(server, "projects"))
    token = ok(cli(server, "token", "create", "--user", "alice", "--project", "default")).strip()
    assert len(token) >= 40
    job_id = int(ok(cli(server, "submit", "-q", "--", "true", env={"AIFACTORY_TOKEN": token})))
    assert wait_state(server, job_id, {"succeeded"})["user"] == "alice"
    refused(cli(server, "token", "create", "--user", "eve", "--project", "default", env={"AIFACTORY_TOKEN": token}))


def test_bad_gpus_exits_2_with_the_servers_message(server: ServerProcess) -> None:
    with server.client() as http:
        before = [j["id"] for j in http.get("/api/jobs").json()]
        refused(cli(server, "submit", "--gpus", "9", "--", "true"), "gpus", "9")
        assert [j["id"] for j in http.get("/api/jobs").json()] == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["submit", "--gpus", "0", "--", "true"], ["gpus"]),
        (["submit", "--gpus", "-1", "--", "true"], ["gpus"]),
        (["submit", "--project", "nosuch", "--", "true"], ["project", "nosuch"]),
        (["submit"], ["command"]),
        (["submit", "--time-limit", "soon", "--", "true"], ["time_limit"]),
        (["submit", "--env", "NOEQUALS", "--", "true"], ["env"]),
        (["show", "424242"], ["424242"]),
        (["cancel", "424242"], ["424242"]),
        (["logs", "424242"], ["424242"]),
    ],
)
def test_bad_input_in_process(
    server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: list[str],
) -> None:
    """The same `main()` in this process (a subprocess each would cost a second): exit 2, the server's words."""
    from aifactory.cli import main

    monkeypatch.setenv("AIFACTORY_HOME", str(server.home))
    monkeypatch.delenv("AIFACTORY_URL", raising=False)
    monkeypatch.delenv("AIFACTORY_TOKEN", raising=False)
    monkeypatch.setattr(sys, "argv", ["aifactory", *args])
    with server.client() as http:
        before = [j["id"] for j in http.get("/api/jobs").json()]
        with pytest.raises(SystemExit) as exit_:
            main()
        assert [j["id"] for j in http.get("/api/jobs").json()] == before
    captured = capsys.readouterr()
    refused(subprocess.CompletedProcess(args, exit_.value.code, captured.out, captured.err), *words)


def test_malformed_yaml_exits_2(server: ServerProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("command: [python, -c\ngpus: 1\n")
    refused(cli(server, "submit", str(bad)), "malformed YAML", "line")
    bad.write_text("- just\n- a list\n")
    refused(cli(server, "submit", str(bad)), "mapping")
    refused(cli(server, "submit", str(tmp_path / "missing.yaml")), "missing.yaml")


def test_unreachable_server_is_one_line(server: ServerProcess, tmp_path: Path) -> None:
    refused(cli(server, "jobs", env={"AIFACTORY_URL": "http://127.0.0.1:9"}), "cannot reach")
    refused(cli(server, "jobs", env={"AIFACTORY_HOME": str(tmp_path)}), "aifactory up")
    refused(cli(server, "jobs", env={"AIFACTORY_TOKEN": "wrong"}), "token")


def test_up_in_the_foreground_ctrl_c_stops_the_server_not_the_jobs(tmp_path: Path) -> None:
    home, go, pid_file = tmp_path / "home", tmp_path / "go", tmp_path / "job.pid"
    env = {k: v for k, v in os.environ.items() if k not in ("AIFACTORY_URL", "AIFACTORY_TOKEN")}
    env["AIFACTORY_HOME"] = str(home)
    with (tmp_path / "up.log").open("wb") as log:
        up = subprocess.Popen([*AIFACTORY, "up", "--gpus", "2", "--port", "0"], env=env, stdout=log, stderr=log)
    again = ServerProcess(home, "--gpus", "2")
    try:
        deadline = time.monotonic() + 60
        while not (home / "server.json").is_file() or str(up.pid) not in (home / "server.json").read_text():
            assert up.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.05)
        second = subprocess.run(
            [*AIFACTORY, "up", "--gpus", "2", "--port", "0"], env=env, capture_output=True, text=True
        )
        refused(second, "already serves")
        from aifactory.live.client import Client

        code = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        code += f"while not os.path.exists({str(go)!r}): time.sleep(0.05)"
        with Client.from_env(home) as client:
            job = client.submit({"command": [PY, "-c", code], "gpus": 2})
        while not pid_file.is_file() or not pid_file.read_text():
            time.sleep(0.05)
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        assert not (home / "server.json").exists()
        os.kill(int(pid_file.read_text()), 0)  # the job lives on without its server
        again.start()
        with again.client() as http:
            assert http.get(f"/api/jobs/{job.id}").json()["state"] == "running"
            go.write_text("go")
            done = wait_state(again, job.id, {"succeeded", "failed"})
        assert (done["state"], done["exit_code"]) == ("succeeded", 0)
    finally:
        go.write_text("go")
        if up.poll() is None:
            up.kill()
            up.wait()
        again.stop()


def test_user_text_is_printed_as_text_never_as_markup(server: ServerProcess) -> None:
    names = ["[/]", "[bold red]loud[/]", "[link=http://x]y"]
    ids = [int(ok(cli(server, "submit", "-q", "--name", name, "--", "true"))) for name in names]
    for job_id in ids:
        wait_state(server, job_id, {"succeeded"})
    table = ok(cli(server, "jobs", "--all"))
    for name in names:
        assert name in table, table
    shown = ok(cli(server, "show", str(ids[1])))
    assert "[bold red]loud[/]" in shown
    # Control characters never reach the server's store, so never a terminal.
    refused(cli(server, "submit", "--name", "\x1b]0;pwned\x07", "--", "true"), "name")
