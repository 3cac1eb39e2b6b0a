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
    assert "[default: the current one]" in helped  # help text is not read as markup


def test_printable_escapes_control_characters() -> None:
    assert printable("plain [bold]name[/]") == "plain [bold]name[/]"
    assert printable("a\x1b]0;title\x07b") == "a\\x1b]0;title\\x07b"
    assert printable("tab\there\nnl") == "tab\\there\\nnl"
    assert printable("caf\u00e9 \u2003x") == "caf\u00e9 \u2003x"
