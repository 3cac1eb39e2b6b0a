"""The node side shared by every executor: how a job's wrapper is started on the node that runs it,
what the factory tells the job, and how its end is read back (the wrapper's status file).

The local executor calls these on the server's own machine; the Ray executor's actor calls them on
the node its job was placed on.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from aifactory.core.job import MILLI, JobSpec, Placement
from aifactory.live.checkpoints import checkpoint_path
from aifactory.live.executors import wrap
from aifactory.live.isolation import Isolation

WRAP = str(Path(__file__).resolve().with_name("wrap.py"))
LOST = "process lost while the server was down"
CHECKPOINT_ENV = "AIFACTORY_CHECKPOINT_FILE"
PF_KTHREAD = 0x00200000  # /proc/PID/stat flags: a kernel thread (its command line is empty too)


def status_path(log_path: Path) -> Path:
    return Path(f"{log_path}.exit")


def read_status(path: Path, command: tuple[str, ...] = ()) -> tuple[int, str] | None:
    """The job's (exit code, reason) from the wrapper's status file; None where it wrote none."""
    try:
        code, _, why = path.read_text().strip().partition(" ")
        exit_code = int(code)
    except (OSError, ValueError):
        return None
    name = repr(command[0]) if command else "the command"
    reasons = {
        "workdir": "cannot enter the job's workdir",
        "notfound": f"command not found: {name}",
        "noexec": f"cannot run {name}",
        "empty": "empty command",
    }
    return exit_code, reasons.get(why, "")


def is_wrapper_alive(pid: int, status: Path) -> bool:
    """True if `pid` is a live (not zombie) wrapper of this job: guards against pid reuse."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        raw = (proc / "cmdline").read_bytes()
        stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        state, flags = stat[0], int(stat[6])
    except (OSError, IndexError, ValueError):
        return False
    if state == "Z" or flags & PF_KTHREAD:  # a zombie, or a kernel thread that took the pid over
        return False
    # An empty command line: the process is exiting (its memory is gone, it is not a zombie yet);
    # called dead now, it would be reaped too early and left a zombie.
    return not raw or os.fsencode(status) in raw.split(b"\0")


def factory_env(job_id: int, placement: Placement, checkpoint: Path | None = None) -> dict[str, str]:
    """What the factory tells every job (over the job's own variables)."""
    env = {}
    if checkpoint is not None:  # the job reports a checkpoint by touching it (aifactory.checkpoint)
        env[CHECKPOINT_ENV] = str(checkpoint)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for _, idx in placement.parts for g in idx)
    env["AIFACTORY_JOB_ID"] = str(job_id)
    env["AIFACTORY_GPU_FRACTION"] = f"{placement.milli / MILLI:g}"  # "1" for whole GPUs, "0.5" for half
    env["AIFACTORY_PLACEMENT"] = placement.describe()
    return env


def spawn_wrapper(argv: list[str], env: dict[str, str], log_path: Path) -> int:
    """Start a job's wrapper (`argv`) with stdin from /dev/null and stdout+stderr appended to
    `log_path`; its pid. Shared by every executor's node side."""
    status = status_path(log_path)
    status.unlink(missing_ok=True)  # a status left by an earlier attempt
    Path(wrap.started_path(str(status))).unlink(missing_ok=True)  # and its pid
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], argv, env, file_actions=actions)


def read_started(status: Path) -> int | None:
    """The pid the wrapper recorded as it started (None: it never started)."""
    try:
        return int(Path(wrap.started_path(str(status))).read_text().strip())
    except (OSError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_env(placement: Placement, rank: int, addresses: list[str], port: int) -> dict[str, str]:
    """torchrun's static rendezvous, one process per node: MASTER_ADDR/PORT (rank 0's node),
    WORLD_SIZE (every GPU of the gang), NNODES, NODE_RANK, LOCAL_WORLD_SIZE (this node's GPUs)."""
    node, gpus = placement.parts[rank]
    return {
        "MASTER_ADDR": addresses[0],
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(sum(len(idx) for _, idx in placement.parts)),
        "NNODES": str(len(placement.parts)),
        "NODE_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(len(gpus)),
        "AIFACTORY_NODE": node,
        "AIFACTORY_NODE_IPS": "\n".join(addresses),
    }


def prepare_rank(
    isolation: Isolation,
    job_id: int,
    spec: JobSpec,
    placement: Placement,
    rank: int,
    addresses: list[str],
    port: int,
    status: Path,
    cwd: str,
    watch: int | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The wrapper's argv and environment for one rank of a job, on the node that runs it: that
    node's GPUs, the gang's rendezvous (`addresses`: each rank's node), and the job's isolation
    made (account, cgroup, scratch directory). `watch`: a pid the job must not outlive.

    IsolationError: the job cannot be isolated as configured (it must not start)."""
    node, gpus = placement.parts[rank]
    own = Placement(((node, gpus),), placement.milli, placement.cpu_milli, placement.memory_mib)
    env = factory_env(job_id, own, checkpoint_path(isolation.jobs_dir, job_id))
    env["AIFACTORY_PLACEMENT"] = placement.describe()
    if spec.array_id is not None:  # an element of a job array: which array, which element
        env["AIFACTORY_ARRAY_ID"] = str(spec.array_id)
        env["AIFACTORY_ARRAY_INDEX"] = str(spec.array_index)
    if len(placement.parts) > 1:
        env |= rank_env(placement, rank, addresses, port)
    launch = isolation.prepare(job_id, spec, own, env, part=rank)
    argv = [sys.executable, "-I", "-S", WRAP, *launch.wrapper_options()]
    if watch is not None:
        argv += ["--watch", str(watch)]
    argv += [str(status), spec.workdir or cwd, *spec.command]
    return argv, launch.env
