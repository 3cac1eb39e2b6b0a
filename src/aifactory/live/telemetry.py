"""GPU telemetry: what each GPU is doing, read through NVML, and whose work it is.

One reader per machine (`NvmlReader`: `nvmlInit` once, handles cached, one thread: NVML calls
serialize on the driver's lock, ../shared/notes/observability.md) reads every GPU's utilisation,
memory, power and temperature every `telemetry_s` seconds, and the processes on each GPU less
often. `Telemetry` keeps the latest reading of each GPU (for `/metrics` and the nodes view),
folds each reading into the job that holds the GPU (the core's allocation map: the scheduler's
own record of who holds what), and into one-minute buckets per GPU that the store keeps as the
GPU's history (`gpu_samples`, with retention). A job's compact series is its `JobUsage`: mean and
peak utilisation, peak memory, energy, busy GPU-seconds.

No NVML (no library, no driver, no GPU) is a normal case: nothing is read and nothing is shown.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aifactory.core.cluster import Node
from aifactory.core.job import MILLI

log = logging.getLogger(__name__)

MIB = 1024 * 1024
BUCKET_S = 60.0  # the stored history's resolution: one row per GPU per minute
RECENT = 720  # readings of each GPU kept in memory (an hour at 5 s)
_JOB_CGROUP = re.compile(rb"/job-(\d+)(?:-r\d+)?(?:/|$)")
_JOB_ENV = re.compile(rb"(?:^|\0)AIFACTORY_JOB_ID=(\d+)(?:\0|$)")


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one instant. `power_w`/`temperature_c` None: this GPU does not report them."""

    node: str
    index: int
    uuid: str
    model: str
    utilization: float  # percent of the last sample period a kernel ran (NVML's "gpu")
    memory_used_mib: int
    memory_total_mib: int
    power_w: float | None
    temperature_c: float | None


@dataclass(slots=True)
class JobUsage:
    """A job's compact series, over all its GPUs and attempts."""

    job_id: int
    samples: int = 0  # readings of its GPUs folded in
    util_sum: float = 0.0  # percent, summed over readings (mean = util_sum / samples)
    util_peak: float = 0.0
    memory_peak_mib: int = 0  # the most any one of its GPUs had in use
    energy_j: float = 0.0  # its share of its GPUs' power x time
    busy_gpu_s: float = 0.0  # GPU-seconds x utilisation: the work its GPUs did
    gpu_s: float = 0.0  # GPU-seconds held while read
    idle_since: float | None = None  # when its GPUs last went below the idle threshold (None: busy)

    @property
    def util_mean(self) -> float:
        return self.util_sum / self.samples if self.samples else 0.0

    @property
    def energy_wh(self) -> float:
        return self.energy_j / 3600


@dataclass(slots=True)
class Bucket:
    """One GPU over one minute: sums to be averaged when stored."""

    node: str
    index: int
    start: float
    job_id: int | None
    project: str | None
    n: int = 0
    util: float = 0.0
    memory_mib: float = 0.0
    power_w: float = 0.0
    temperature_c: float = 0.0
    seconds: float = 0.0  # time covered (energy = power x seconds)


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One stored row of a GPU's history: its means over `seconds` from `at`."""

    at: float
    node: str
    gpu: int
    seconds: float
    utilization: float
    memory_used_mib: float
    power_w: float
    temperature_c: float
    job_id: int | None
    project: str | None


class NvmlReader:
    """The GPUs of this machine through NVML, read from one thread."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._static: list[tuple[str, str, int]] = []  # uuid, model, total MiB per GPU

    def open(self) -> bool:
        """True if NVML answers and sees a GPU; False is a normal case (no GPU here)."""
        try:
            import pynvml
        except ImportError:
            return False
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._static = [
                (
                    _text(pynvml.nvmlDeviceGetUUID(h)),
                    _text(pynvml.nvmlDeviceGetName(h)),
                    int(pynvml.nvmlDeviceGetMemoryInfo(h).total) // MIB,
                )
                for h in self._handles
            ]
        except (pynvml.NVMLError, OSError) as exc:
            log.info("no GPU telemetry: NVML unavailable (%s)", exc)
            return False
        self._nvml = pynvml
        return bool(self._handles)

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
            self._nvml = None

    def read(self) -> list[GpuReading]:
        nvml = self._nvml
        out = []
        for index, handle in enumerate(self._handles):
            uuid, model, total = self._static[index]
            try:
                util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                used = int(nvml.nvmlDeviceGetMemoryInfo(handle).used) // MIB
            except nvml.NVMLError as exc:  # e.g. a GPU fallen off the bus: skipped, said once a read
                log.warning("GPU %d: NVML read failed: %s", index, exc)
                continue
            out.append(
                GpuReading(
                    self.node,
                    index,
                    uuid,
                    model,
                    util,
                    used,
                    total,
                    self._optional(nvml.nvmlDeviceGetPowerUsage, handle, 1e-3),
                    self._optional(nvml.nvmlDeviceGetTemperature, handle, 1.0, nvml.NVML_TEMPERATURE_GPU),
                )
            )
        return out

    def _optional(self, call: Callable[..., Any], handle: Any, scale: float, *args: Any) -> float | None:
        try:
            return float(call(handle, *args)) * scale
        except self._nvml.NVMLError:  # not supported on this GPU
            return None

    def processes(self) -> dict[int, list[tuple[int, int]]]:
        """GPU index -> [(pid, MiB used)] of the compute processes on it."""
        out: dict[int, list[tuple[int, int]]] = {}
        for index, handle in enumerate(self._handles):
            try:
                procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            except self._nvml.NVMLError:
                continue
            out[index] = [(int(p.pid), int(p.usedGpuMemory or 0) // MIB) for p in procs]
        return out

    def job_memory(self, jobs_by_pgid: Mapping[int, int]) -> dict[int, int]:
        """job id -> GPU memory (MiB) its processes on this machine hold (read on the machine:
        its /proc says whose each process is)."""
        memory: dict[int, int] = {}
        for procs in self.processes().values():
            for pid, mib in procs:
                job_id = job_of_pid(pid, jobs_by_pgid)
                if job_id is not None:
                    memory[job_id] = memory.get(job_id, 0) + mib
        return memory


class GpuReader(Protocol):
    """What the server reads GPUs through: this machine's NVML, or every Ray node's."""

    def open(self) -> bool: ...

    def read(self) -> list[GpuReading]: ...

    def job_memory(self, jobs_by_pgid: Mapping[int, int]) -> dict[int, int]: ...

    def close(self) -> None: ...


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def job_of_pid(pid: int, jobs_by_pgid: Mapping[int, int], proc: Path = Path("/proc")) -> int | None:
    """The job a process belongs to: its process group's (the wrapper leads it), else its cgroup's
    (`job-N`: a process that left the group is still in the job's cgroup), else the job id the
    factory put in its environment (a node that knows no process groups: a Ray node's sampler)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        pgid = int(stat.rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None
    if pgid in jobs_by_pgid:
        return jobs_by_pgid[pgid]
    try:
        found = _JOB_CGROUP.search((proc / str(pid) / "cgroup").read_bytes())
        if found:
            return int(found.group(1))
        env = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    given = _JOB_ENV.search(env)
    return int(given.group(1)) if given else None


@dataclass
class Telemetry:
    """The latest reading of every GPU, each running job's usage, and the history to store."""

    idle_threshold: float = 5.0  # percent: below it a GPU counts as idle
    latest: dict[tuple[str, int], GpuReading] = field(default_factory=dict)
    at: float | None = None  # when `latest` was read
    jobs: dict[int, JobUsage] = field(default_factory=dict)
    process_memory: dict[int, int] = field(default_factory=dict)  # job id -> MiB its processes hold
    # The last readings of each GPU, as (time, utilisation): the live part of a job's chart.
    recent: dict[tuple[str, int], deque[tuple[float, float]]] = field(default_factory=dict)
    _buckets: dict[tuple[str, int], Bucket] = field(default_factory=dict)
    _done: list[GpuSample] = field(default_factory=list)

    def fold(
        self,
        readings: Iterable[GpuReading],
        now: float,
        holders: Mapping[tuple[str, int], Mapping[int, int]],
        project_of: Callable[[int], str | None],
    ) -> None:
        """Take one round of readings at `now`. `holders`: (node, GPU) -> {job id: milli held}."""
        period = 0.0 if self.at is None else max(0.0, now - self.at)
        self.at = now
        per_job: dict[int, list[float]] = {}
        for r in readings:
            key = (r.node, r.index)
            self.latest[key] = r
            ring = self.recent.get(key)
            if ring is None:
                ring = self.recent[key] = deque(maxlen=RECENT)
            ring.append((now, r.utilization))
            held = holders.get(key, {})
            for job_id, milli in held.items():
                usage = self.jobs.get(job_id)
                if usage is None:
                    usage = self.jobs[job_id] = JobUsage(job_id)
                share = milli / MILLI
                usage.samples += 1
                usage.util_sum += r.utilization
                usage.util_peak = max(usage.util_peak, r.utilization)
                usage.memory_peak_mib = max(usage.memory_peak_mib, r.memory_used_mib)
                usage.energy_j += (r.power_w or 0.0) * period * share
                usage.busy_gpu_s += r.utilization / 100 * period * share
                usage.gpu_s += period * share
                per_job.setdefault(job_id, []).append(r.utilization)
            owner = next(iter(held), None) if len(held) == 1 else None  # a shared GPU is nobody's alone
            self._bucket(r, now, period, owner, project_of(owner) if owner is not None else None)
        for job_id, utils in per_job.items():
            usage = self.jobs[job_id]
            if max(utils) < self.idle_threshold:
                usage.idle_since = usage.idle_since if usage.idle_since is not None else now
            else:
                usage.idle_since = None

    def _bucket(self, r: GpuReading, now: float, period: float, job_id: int | None, project: str | None) -> None:
        key = (r.node, r.index)
        b = self._buckets.get(key)
        if b is not None and (now - b.start >= BUCKET_S or b.job_id != job_id):
            self._close(b)
            b = None
        if b is None:
            b = self._buckets[key] = Bucket(r.node, r.index, now, job_id, project)
        b.n += 1
        b.util += r.utilization
        b.memory_mib += r.memory_used_mib
        b.power_w += r.power_w or 0.0
        b.temperature_c += r.temperature_c or 0.0
        b.seconds += period

    def _close(self, b: Bucket) -> None:
        n = max(1, b.n)
        self._done.append(
            GpuSample(
                b.start,
                b.node,
                b.index,
                b.seconds,
                b.util / n,
                b.memory_mib / n,
                b.power_w / n,
                b.temperature_c / n,
                b.job_id,
                b.project,
            )
        )
        del self._buckets[(b.node, b.index)]

    def take_samples(self, flush: bool = False) -> list[GpuSample]:
        """The history rows completed since the last call (`flush`: close the open minutes too)."""
        if flush:
            for b in list(self._buckets.values()):
                self._close(b)
        done, self._done = self._done, []
        return done

    def attribute_processes(self, memory: Mapping[int, int]) -> None:
        """GPU memory (MiB) held by each job's own processes, as the machines read it."""
        self.process_memory = dict(memory)

    def forget(self, job_id: int) -> JobUsage | None:
        """A job ended: its usage, to be stored for good (its GPUs' open minutes are closed: the
        history says what it did up to its end)."""
        self.process_memory.pop(job_id, None)
        for b in [b for b in self._buckets.values() if b.job_id == job_id]:
            self._close(b)
        return self.jobs.pop(job_id, None)


def holders_of(nodes: Iterable[Node]) -> dict[tuple[str, int], dict[int, int]]:
    """(node, GPU) -> {job id: milli held}: the cluster's own map of who holds each GPU."""
    return {(n.name, g): held for n in nodes for g, held in enumerate(n.holders) if held}
