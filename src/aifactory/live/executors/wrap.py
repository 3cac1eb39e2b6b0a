"""The job wrapper: start the job, wait for it, record how it ended in a status file.

Run as `python -I -S wrap.py STATUS WORKDIR COMMAND...` by the local executor (stdlib
only, no package imports: it starts fast); it makes itself the leader of a new session
and process group, which the executor signals as a whole.
The status file (`<log>.exit`, written atomically: temp file + rename) holds
`<exit code> [why]`, so a server that is not the wrapper's parent (one restarted
after a crash) still learns the job's real exit code; codes are Python's (-15 for
SIGTERM), 127 for a command not found, 126 for one that cannot run.

No stop signal is ever lost: the wrapper blocks SIGTERM/SIGINT/SIGHUP before anything
else, so one sent to the group before the job exists stays pending here and is passed
on (or the job is not started); the job gets a clean mask and default handlers
atomically at exec (posix_spawn's setsigmask/setsigdef), so there is no window where
it could swallow one. The wrapper itself only dies by SIGKILL.
"""

from __future__ import annotations

# The C module, not `signal`: that one imports enum, which would double the start-up time.
import _signal as signal
import os
import sys

STOP = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
NOT_FOUND, CANNOT_RUN = 127, 126


def write_status(path: str, code: int, why: str = "") -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{code} {why}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def stops_pending() -> set[int]:
    return set(signal.sigpending()) & STOP


def run(workdir: str, command: list[str]) -> tuple[int, str]:
    """(exit code, why): why is "" when the job ran, else what kept it from running."""
    try:
        os.chdir(workdir)
    except OSError as exc:
        print(f"aifactory: cannot enter workdir {workdir}: {exc.strerror}", file=sys.stderr, flush=True)
        return CANNOT_RUN, "workdir"
    if not command:
        return NOT_FOUND, "empty"
    stopped = stops_pending()
    if stopped:  # told to stop before the job began: it never begins
        return -min(stopped), ""
    try:
        pid = os.posix_spawnp(command[0], command, os.environ, setsigmask=(), setsigdef=STOP)
    except FileNotFoundError:
        print(f"aifactory: command not found: {command[0]}", file=sys.stderr, flush=True)
        return NOT_FOUND, "notfound"
    except OSError as exc:
        print(f"aifactory: cannot run {command[0]}: {exc.strerror}", file=sys.stderr, flush=True)
        return CANNOT_RUN, "noexec"
    for sig in stops_pending():  # sent while the job was being created: it may have missed it
        os.kill(pid, sig)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), ""


def main(argv: list[str]) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP)
    os.setsid()  # here, not by the spawner: a setsid posix_spawn of Python forks (~3-9 ms)
    status, workdir, *command = argv
    code, why = run(workdir, command)
    write_status(status, code, why)
    return code if 0 <= code < 256 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
