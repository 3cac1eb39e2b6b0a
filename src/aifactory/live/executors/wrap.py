"""The job wrapper: start the job, wait for it, record how it ended in a status file.

Run as `python -I -S wrap.py [--uid U --gid G] [--cgroup DIR]... STATUS WORKDIR COMMAND...`
by the local executor (stdlib only, no package imports: it starts fast); it makes itself the
leader of a new session and process group, which the executor signals as a whole. It first writes
its pid to `<log>.pid` (STATUS without `.exit`): a server that crashed before recording the
launch learns from it whether the job's process ever existed.

Isolated (`--uid`/`--cgroup`, the server is root): the wrapper stays root, out of the job's reach
(an unprivileged job cannot signal it); the job's process joins the cgroups, drops every group
and switches to the job's account, then enters the workdir as that account (never as root: a
root chdir would let the job reach files under directories closed to it) and execs.
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

TYPE_CHECKING = False  # not typing's: importing typing would add ~10 ms to every job's start
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

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


def started_path(status: str) -> str:
    return status.removesuffix(".exit") + ".pid"


def _isolated_child(
    uid: int | None, gid: int | None, cgroups: list[str], workdir: str, command: list[str], w: int
) -> NoReturn:
    """In the forked child: join the groups, become the job's account, enter the workdir, exec.
    Any failure is written to `w` as `why errno` and the child exits; exec success closes `w`."""
    step = "cgroup"
    try:
        for path in cgroups:
            fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
        step = "account"
        if gid is not None:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
        if uid is not None:
            os.setresuid(uid, uid, uid)
        step = "workdir"
        os.chdir(workdir)
        step = "exec"
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execvpe(command[0], command, os.environ)
    except OSError as exc:
        os.write(w, f"{step} {exc.errno or 0}".encode())
    finally:
        os._exit(CANNOT_RUN)


def spawn_isolated(
    uid: int | None, gid: int | None, cgroups: list[str], workdir: str, command: list[str]
) -> tuple[int | None, str]:
    """(pid, "") once the job's process has exec'd, else (None, why)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _isolated_child(uid, gid, cgroups, workdir, command, w)
    os.close(w)
    report = b""
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        report += chunk
    os.close(r)
    if not report:
        return pid, ""
    os.waitpid(pid, 0)
    step, _, err = report.decode().partition(" ")
    errno = int(err or 0)
    if step == "exec" and errno == 2:
        print(f"aifactory: command not found: {command[0]}", file=sys.stderr, flush=True)
        return None, "notfound"
    if step == "workdir":
        print(f"aifactory: cannot enter workdir {workdir}: {os.strerror(errno)}", file=sys.stderr, flush=True)
        return None, "workdir"
    print(f"aifactory: cannot start the job ({step}): {os.strerror(errno)}", file=sys.stderr, flush=True)
    return None, "noexec" if step == "exec" else step


def run(
    workdir: str, command: list[str], uid: int | None = None, gid: int | None = None, cgroups: Sequence[str] = ()
) -> tuple[int, str]:
    """(exit code, why): why is "" when the job ran, else what kept it from running."""
    isolated = uid is not None or bool(cgroups)
    if not isolated:
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
    if isolated:
        pid, why = spawn_isolated(uid, gid, list(cgroups), workdir, command)
        if pid is None:
            return (NOT_FOUND if why == "notfound" else CANNOT_RUN), why
    else:
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


def parse(argv: list[str]) -> tuple[int | None, int | None, list[str], int | None, str, str, list[str]]:
    uid: int | None = None
    gid: int | None = None
    watch: int | None = None
    cgroups: list[str] = []
    while argv and argv[0] in ("--uid", "--gid", "--cgroup", "--watch"):
        flag, value, *argv = argv
        if flag == "--uid":
            uid = int(value)
        elif flag == "--gid":
            gid = int(value)
        elif flag == "--watch":
            watch = int(value)
        else:
            cgroups.append(value)
    status, workdir, *command = argv
    return uid, gid, cgroups, watch, status, workdir, command


def watch_over(pid: int) -> None:
    """Kill the whole process group (the job and this wrapper) once `pid` is gone: a job started
    by a Ray actor must not outlive its node's Ray processes, holding a GPU nobody accounts for."""
    import threading  # only here: the plain wrapper starts without it
    import time

    def poll() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.killpg(os.getpgid(0), signal.SIGKILL)
            except PermissionError:
                pass
            time.sleep(0.5)

    threading.Thread(target=poll, daemon=True).start()


def main(argv: list[str]) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP)
    os.setsid()  # here, not by the spawner: a setsid posix_spawn of Python forks (~3-9 ms)
    uid, gid, cgroups, watch, status, workdir, command = parse(argv)
    if watch is not None:
        watch_over(watch)
    fd = os.open(started_path(status), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    code, why = run(workdir, command, uid, gid, cgroups)
    write_status(status, code, why)
    return code if 0 <= code < 256 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
