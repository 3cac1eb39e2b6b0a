"""The job wrapper: a few lines of POSIX sh that run the job and record how it ended.

The wrapper is the job's parent; it writes `<code> [workdir]` to the status file
(`<log>.exit`, atomically: temp file + rename) when the job ends, so a server that
is not the wrapper's parent (one restarted after a crash) can still learn the job's
real exit code. sh, not Python: it starts in ~1 ms instead of ~20 ms of CPU, which
is most of what a short job costs the machine.

`trap :` catches SIGTERM/SIGINT/SIGHUP (the whole process group gets them on a
cancel) so the wrapper outlives its job to write the status; caught signals, unlike
ignored ones, are reset to the default in the job it starts. The shell reports a
job killed by signal N as 128+N; `decode` turns that into -N, as Python does.
"""

from __future__ import annotations

import signal
from pathlib import Path

SCRIPT = """trap : TERM INT HUP
status=$1 workdir=$2
shift 2
if cd -- "$workdir" 2>/dev/null; then
    "$@"
    code=$? why=
else
    echo "aifactory: cannot enter workdir $workdir" >&2
    code=126 why=workdir
fi
echo "$code $why" > "$status.tmp" && mv -f -- "$status.tmp" "$status"
"""
NAME = "aifactory-job"  # the wrapper's $0: what `ps` shows
NOT_FOUND, CANNOT_RUN = 127, 126  # the shell's codes


def argv(status: Path, workdir: str, command: tuple[str, ...]) -> list[str]:
    return ["/bin/sh", "-c", SCRIPT, NAME, str(status), workdir, *command]


def decode(code: int, why: str, command: tuple[str, ...] = ()) -> tuple[int, str]:
    """(exit code as Python reports it, reason) from what the wrapper wrote."""
    name = repr(command[0]) if command else "the command"
    if why == "workdir":
        return CANNOT_RUN, "cannot enter the job's workdir"
    if code == NOT_FOUND:
        return code, f"command not found: {name}"
    if code == CANNOT_RUN:
        return code, f"cannot run {name} (not executable?)"
    if 128 < code < 128 + signal.NSIG:
        return 128 - code, ""
    return code, ""


def read_status(path: Path, command: tuple[str, ...] = ()) -> tuple[int, str] | None:
    """The job's (exit code, reason), None where the wrapper wrote no status (it was killed)."""
    try:
        code, _, why = path.read_text().strip().partition(" ")
        return decode(int(code), why, command)
    except (OSError, ValueError):
        return None
