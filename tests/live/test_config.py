"""One configuration: the home resolved alike everywhere, the user's config.toml, `aifactory login`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifactory.config import connection, read_config, resolve_home, write_login
from aifactory.core.errors import SpecError
from aifactory.line import home as line_home
from aifactory.live.api.launch import ServerProcess
from aifactory.live.settings import LiveSettings
from aifactory.serve.server import make_config

AIFACTORY = [sys.executable, "-c", "from aifactory.cli import main; main()"]


def test_a_tilde_home_means_one_directory_to_every_part(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AIFACTORY_HOME", "~/af")
    want = tmp_path / "af"
    serve = make_config(
        ref="m@1", home=None, host="127.0.0.1", port=0, max_batch=1, max_wait_ms=1, batching=False,
        shadow=None, token_file=None, poll_s=0, threads=1,
    )  # fmt: skip
    assert resolve_home() == LiveSettings().home == line_home() == serve.home == want
    monkeypatch.chdir(tmp_path)
    assert resolve_home("rel") == tmp_path / "rel"  # a relative home is made absolute


def test_config_toml_is_validated_whole_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('url = "http://h:1"\n[floor]\npolicy_opts = "half_life_s=1"\n')
    with pytest.raises(SpecError) as err:
        read_config(tmp_path)
    assert err.value.field == "config.floor.policy_opts"
    (tmp_path / "config.toml").write_text('colour = "blue"\n')
    with pytest.raises(SpecError) as err:
        read_config(tmp_path)
    assert err.value.field == "config.colour"
    (tmp_path / "config.toml").write_text("url = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        read_config(tmp_path)


def test_floor_defaults_come_from_config_and_flags_win(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[floor]\npolicy = "fairshare"\npolicy_opts = ["half_life_s=60"]\n')
    chosen = LiveSettings.chosen(tmp_path, gpus=1)
    assert (chosen.policy, chosen.core().half_life_s) == ("fairshare", 60.0)
    flagged = LiveSettings.chosen(tmp_path, gpus=1, policy="fifo", policy_opts=None)
    assert (flagged.policy, flagged.policy_opts) == ("fifo", ())  # the file's options were fairshare's
    opts = LiveSettings.chosen(tmp_path, gpus=1, policy_opts=("half_life_s=5",))
    assert opts.core().half_life_s == 5.0


def test_login_keeps_the_floor_table_and_a_token_goes_only_to_its_server(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[floor]\npolicy = "fifo"\n')
    path = write_login(tmp_path, "http://a:1", "secret", "vision")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = read_config(tmp_path)
    assert (config.url, config.token, config.project, config.floor) == (
        "http://a:1",
        "secret",
        "vision",
        {"policy": "fifo"},
    )
    assert connection(tmp_path).token == "secret"
    assert connection(tmp_path, url="http://elsewhere:2").token is None  # never sent to another server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "server", "--gpus", "2") as srv:
        yield srv


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("AIFACTORY_URL", "AIFACTORY_TOKEN")}
    env = {**base, "AIFACTORY_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*AIFACTORY, *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_user_connects_once_and_their_one_project_becomes_the_default(server: ServerProcess, tmp_path: Path) -> None:
    admin = server.home
    assert cli(admin, "project", "set", "vision", "--quota", "1").returncode == 0
    made = cli(admin, "token", "create", "--user", "ada", "--project", "vision")
    assert made.returncode == 0, made.stderr
    (tmp_path / "ada.token").write_text(made.stdout.strip())
    laptop = tmp_path / "laptop"  # no server.json, no admin token: only what login stores
    login = cli(laptop, "login", server.url, "--token-file", str(tmp_path / "ada.token"))
    assert login.returncode == 0, login.stderr
    assert "as ada (vision); default project vision" in login.stdout
    assert stat.S_IMODE((laptop / "config.toml").stat().st_mode) == 0o600
    submitted = cli(laptop, "submit", "-q", "--", "true")
    assert submitted.returncode == 0, submitted.stderr
    with server.client() as http:
        job = http.get(f"/api/jobs/{int(submitted.stdout)}").json()
    assert (job["project"], job["user"]) == ("vision", "ada")
    (tmp_path / "bad.token").write_text("not-a-token")
    bad = cli(tmp_path / "other", "login", server.url, "--token-file", str(tmp_path / "bad.token"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "other" / "config.toml").exists()


def test_the_servers_options_come_from_the_settings_and_up_shows_them(tmp_path: Path) -> None:
    from dataclasses import fields

    from aifactory.live.settings import parse_settings, settings_parser

    flags = {a.dest: a.option_strings[0] for a in settings_parser("x")._actions if a.dest != "help"}
    # One option per setting, none by hand; config.toml's [users] and [prices] tables are the ones without a flag.
    assert {f.name for f in fields(LiveSettings)} - set(flags) == {"users", "prices"}
    assert set(flags) <= {f.name for f in fields(LiveSettings)}
    args = ["--home", str(tmp_path), "--gpus", "2", "--memory-per-node", "1GiB", "--cpus-per-node", "1.5"]
    s = parse_settings([*args, "--policy-opt", "half_life_s=7", "--policy-opt", "min_runtime_s=1"], "x")
    assert (s.gpus, s.memory_mib_per_node, s.cpu_milli_per_node, s.core().half_life_s) == (2, 1024, 1500, 7.0)
    shown = cli(tmp_path, "up", "--help")
    assert shown.returncode == 0 and all(flag in shown.stdout for flag in flags.values()), shown.stdout
    bad = cli(tmp_path, "up", "--gpus", "two")
    assert bad.returncode == 2 and "--gpus" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_the_homes_admin_token_goes_only_to_the_homes_own_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "server.json").write_text('{"url": "http://127.0.0.1:8470", "pid": 1}')
    (tmp_path / "token").write_text("admin-secret\n")
    monkeypatch.delenv("AIFACTORY_TOKEN", raising=False)
    monkeypatch.delenv("AIFACTORY_URL", raising=False)
    assert connection(tmp_path) == connection(tmp_path, url="http://127.0.0.1:8470")
    assert connection(tmp_path).token == "admin-secret"
    monkeypatch.setenv("AIFACTORY_URL", "http://elsewhere:8470")  # e.g. a URL someone handed the user
    assert (connection(tmp_path).url, connection(tmp_path).token) == ("http://elsewhere:8470", None)


@pytest.mark.parametrize(
    ("token", "field"),
    [("x" * 600, "token"), ("tok", "url")],
)
def test_login_refuses_bad_values_naming_the_field_and_writes_nothing(tmp_path: Path, token: str, field: str) -> None:
    url = "http://h:1" if field == "token" else "gpu-head:8470"
    with pytest.raises(SpecError) as err:
        write_login(tmp_path, url, token, None)
    assert err.value.field == field and not (tmp_path / "config.toml").exists()


def test_login_to_nowhere_or_with_no_token_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("tok")
    (tmp_path / "empty").write_text("\n")
    for args in (
        ["login", "http://127.0.0.1:9", "--token-file", str(tmp_path / "t")],  # nothing listens on port 9
        ["login", "http://127.0.0.1:9", "--token-file", str(tmp_path / "empty")],
        ["login", "http://127.0.0.1:9", "--token-file", str(tmp_path / "missing")],
    ):
        done = cli(tmp_path / "home", *args)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "config.toml").exists()
