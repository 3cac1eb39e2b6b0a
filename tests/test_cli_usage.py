"""The installed `aifactory` entry point on wrong input: one line, exit 2, never a traceback,
whatever click Typer bundles. No server is needed for any of these."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aifactory.cli.text import printable

ENTRY = Path(sys.executable).with_name("aifactory")


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFACTORY_")}
    env |= {"AIFACTORY_HOME": str(home), "COLUMNS": "100"}
    return subprocess.run([str(ENTRY), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        ["jbos"],
        ["show", "abc"],
        ["show"],
        ["logs", "1", "--tail", "many"],
        ["jobs", "--limit", "3"],
        ["submit", "--gpus", "nan", "--", "true"],
        ["submit", "--gpus"],
        ["twin", "run", "--nodes", "x"],
        ["plan", "nosuch"],
        ["token", "revoke"],
        ["--nosuch"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    done = run(*args, home=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr


def test_a_bare_command_shows_its_help(tmp_path: Path) -> None:
    done = run(home=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "Commands:" in done.stdout + done.stderr


def test_version_completion_and_flags_in_help(tmp_path: Path) -> None:
    from importlib.metadata import version

    assert run("--version", home=tmp_path).stdout.strip() == f"aifactory {version('aifactory')}"
    completion = run("--show-completion", "bash", home=tmp_path)
    assert completion.returncode == 0 and "complete" in completion.stdout and "aifactory" in completion.stdout
    helped = run("submit", "--help", home=tmp_path).stdout
    assert "--multi-node " in helped and "<bool>" not in helped
    assert "[default: the current one]" in " ".join(helped.split())  # help text is not read as markup (however wrapped)


def test_printable_escapes_control_characters() -> None:
    assert printable("plain [bold]name[/]") == "plain [bold]name[/]"
    assert printable("a\x1b]0;title\x07b") == "a\\x1b]0;title\\x07b"
    assert printable("tab\there\nnl") == "tab\\there\\nnl"
    assert printable("caf\u00e9 \u2003x") == "caf\u00e9 \u2003x"


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)


def test_a_billion_laughs_job_file_is_refused_at_once(tmp_path: Path) -> None:
    import time

    job = tmp_path / "laughs.yaml"
    job.write_text("command: [true]\n" + LAUGHS)
    started = time.monotonic()
    done = run("submit", str(job), home=tmp_path)
    assert done.returncode == 2 and "expands to more than" in done.stderr, done.stderr
    assert time.monotonic() - started < 10


def test_yaml_and_toml_limits() -> None:
    from aifactory.bounded import MAX_DEPTH, load_toml, load_yaml
    from aifactory.core.errors import SpecError

    with pytest.raises(SpecError, match="expands to more than"):
        load_yaml(LAUGHS)
    with pytest.raises(SpecError, match="aliases"):
        load_yaml("a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n")
    with pytest.raises(SpecError, match="deeper"):
        load_yaml("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(SpecError, match="larger"):
        load_yaml("x: " + "y" * (2 << 20))
    with pytest.raises(SpecError, match="deeper"):
        load_toml("x = " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert load_yaml("a: &x [1]\nb: *x\n") == {"a": [1], "b": [1]}  # a few aliases are fine
