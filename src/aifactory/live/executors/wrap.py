"""The job wrapper: run the job's command, wait for it, write its exit status to a file.

Run as `python -I -S wrap.py EXIT_PATH WORKDIR -- COMMAND...` (stdlib only, no package
imports, so it starts fast). The status file lets a server that is not the wrapper's
parent (one restarted after a crash) learn the job's real exit code. It is written
atomically (temp file + rename) as JSON: {"exit_code": int, "reason": str}, exit
codes as Python reports them (-15 for SIGTERM); 127 command not found, 126 cannot run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def write_status(path: str, exit_code: int, reason: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"exit_code": exit_code, "reason": reason}, f)
    os.replace(tmp, path)


def run(workdir: str, command: list[str]) -> tuple[int, str]:
    if not command:
        return 127, "empty command"
    try:
        os.chdir(workdir)
    except OSError as exc:
        return 126, f"cannot enter workdir {workdir!r}: {exc.strerror}"
    try:
        proc = subprocess.Popen(command)
    except FileNotFoundError:
        return 127, f"command not found: {command[0]!r}"
    except PermissionError:
        return 126, f"permission denied: {command[0]!r}"
    except OSError as exc:
        return 126, f"cannot run {command[0]!r}: {exc.strerror}"
    return proc.wait(), ""


def main(argv: list[str]) -> int:
    exit_path, workdir, sep, *command = argv
    if sep != "--":
        print(f"usage: wrap.py EXIT_PATH WORKDIR -- COMMAND... (got {argv!r})", file=sys.stderr)
        return 2
    # Our own session and process group (pgid = our pid), so the server can signal the job's
    # whole tree; done here, not by the spawner: a setsid spawn forks instead of vforking (~9 ms).
    os.setsid()
    # A handler, not SIG_IGN: the signal reaches the whole process group, the wrapper must
    # outlive its job to record the status, and handlers (unlike SIG_IGN) reset at exec.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    code, reason = run(workdir, command)
    if reason:
        print(f"aifactory: {reason}", file=sys.stderr, flush=True)
    write_status(exit_path, code, reason)
    return code if 0 <= code < 256 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
