"""A control group per job: the CPU and memory it asked for, and only its own GPUs' devices.

Version 2 where the unified hierarchy has the memory controller, else version 1 (these machines
mount v1 controllers and a v2 tree with almost nothing in it). As Slurm's `task/cgroup` does with
`ConstrainCores`, `ConstrainRAMSpace` and `ConstrainDevices`. On v2 the device rule needs an eBPF
program, which this module does not load: there only CPU and memory are enforced, and `level`
says so.

The server (root) makes the groups; the job's wrapper moves the job into them before it drops
to the job's account, so everything the job starts stays inside, even what leaves its process
group: `kill_all` reaches those too.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "devices", "pids")
CFS_PERIOD_US = 100_000
NVIDIA_MAJOR = 195  # /dev/nvidia<N> (minor N) and /dev/nvidiactl (255): the driver's documented major
# What every job may open: null, zero, full, random, urandom, tty, ptmx and the pseudo-terminals.
BASE_DEVICES = (
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
)


def device_majors(proc_devices: Path = Path("/proc/devices")) -> dict[str, int]:
    """Character device majors by driver name (nvidia-uvm has a major of its own)."""
    majors: dict[str, int] = {}
    try:
        lines = proc_devices.read_text().splitlines()
    except OSError:
        return majors
    for line in lines:
        if line.startswith("Block"):
            break
        number, _, name = line.strip().partition(" ")
        if number.isdigit():
            majors[name] = int(number)
    return majors


def gpu_device_rules(gpus: Iterable[int], majors: dict[str, int] | None = None) -> list[str]:
    """`devices.allow` lines for these GPU indices: their /dev/nvidiaN, the control devices and UVM."""
    majors = device_majors() if majors is None else majors
    nvidia = majors.get("nvidia-frontend", majors.get("nvidia", NVIDIA_MAJOR))
    rules = [f"c {nvidia}:{i} rwm" for i in sorted(set(gpus))]
    if rules:
        rules += [f"c {nvidia}:255 rwm", f"c {nvidia}:254 rwm"]  # nvidiactl, nvidia-modeset
        rules += [f"c {majors[name]}:* rwm" for name in ("nvidia-uvm", "nvidia-caps") if name in majors]
    return rules


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_milli: int = 0  # 0: no CPU limit
    memory_mib: int = 0  # 0: no memory limit
    gpus: tuple[int, ...] = ()  # GPU indices the job may open
    pids: int = 0  # 0: no limit on tasks


def detect(root: Path = ROOT) -> str | None:
    """ "v2", "v1" or None: which hierarchy this process may make job groups in."""
    unified = root / "cgroup.controllers"
    if unified.is_file() and "memory" in unified.read_text().split() and os.access(root, os.W_OK):
        return "v2"
    if all(os.access(root / c, os.W_OK) for c in ("memory", "cpu", "devices")):
        return "v1"
    return None


class JobGroups:
    """The groups of one server's jobs: `<root>/<controller>/<prefix>/<name>` (v1) or
    `<root>/<prefix>/<name>` (v2); a name is `job-<id>`, or `job-<id>-r<rank>` for a gang's rank."""

    def __init__(self, prefix: str, version: str, root: Path = ROOT) -> None:
        self.prefix, self.version, self.root = prefix, version, root

    @property
    def level(self) -> str:
        return "cgroup v1: cpu, memory, devices" if self.version == "v1" else "cgroup v2: cpu, memory (no device rule)"

    def paths(self, name: str) -> list[Path]:
        if self.version == "v2":
            return [self.root / self.prefix / name]
        return [self.root / c / self.prefix / name for c in V1_CONTROLLERS if (self.root / c).is_dir()]

    def create(self, name: str, limits: Limits) -> list[Path]:
        """Make the groups `name` (a job, or one rank of a gang) with its limits; the paths its
        process must join."""
        self.remove(name)  # a group left by an earlier attempt
        paths = self.paths(name)
        if self.version == "v2":
            parent = self.root / self.prefix
            parent.mkdir(exist_ok=True)
            _write(self.root / "cgroup.subtree_control", "+memory +cpu +pids", missing_ok=True)
            _write(parent / "cgroup.subtree_control", "+memory +cpu +pids", missing_ok=True)
            paths[0].mkdir(exist_ok=True)
            if limits.memory_mib:
                _write(paths[0] / "memory.max", str(limits.memory_mib << 20))
                _write(paths[0] / "memory.swap.max", "0", missing_ok=True)
            if limits.cpu_milli:
                _write(paths[0] / "cpu.max", f"{limits.cpu_milli * CFS_PERIOD_US // 1000} {CFS_PERIOD_US}")
            if limits.pids:
                _write(paths[0] / "pids.max", str(limits.pids))
            return paths
        for path in paths:
            path.mkdir(parents=True, exist_ok=True)
            controller = path.relative_to(self.root).parts[0]
            if controller == "memory" and limits.memory_mib:
                _write(path / "memory.limit_in_bytes", str(limits.memory_mib << 20))
                _write(path / "memory.memsw.limit_in_bytes", str(limits.memory_mib << 20), missing_ok=True)
            elif controller == "cpu" and limits.cpu_milli:
                _write(path / "cpu.cfs_period_us", str(CFS_PERIOD_US))
                _write(path / "cpu.cfs_quota_us", str(limits.cpu_milli * CFS_PERIOD_US // 1000))
            elif controller == "devices":
                _write(path / "devices.deny", "a")
                for rule in (*BASE_DEVICES, *gpu_device_rules(limits.gpus)):
                    _write(path / "devices.allow", rule)
            elif controller == "pids" and limits.pids:
                _write(path / "pids.max", str(limits.pids))
        return paths

    def pids(self, name: str) -> set[int]:
        found: set[int] = set()
        for path in self.paths(name):
            with contextlib.suppress(OSError, ValueError):
                found |= {int(p) for p in (path / "cgroup.procs").read_text().split()}
        return found

    def kill_all(self, name: str) -> None:
        """SIGKILL every process left in the groups (those that left its process group too)."""
        for pid in self.pids(name):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, name: str) -> None:
        for path in self.paths(name):
            with contextlib.suppress(FileNotFoundError, OSError):
                path.rmdir()


def _write(path: Path, value: str, missing_ok: bool = False) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except FileNotFoundError:
        if not missing_ok:
            raise
    except OSError:
        if not missing_ok:
            raise
