"""GET /metrics: the floor in Prometheus' text format, behind a token.

Scheduler metrics are modelled on Kueue's (pending jobs by project and reason, the wait for a
first start as a histogram, quota / in use / borrowed / lent / pending GPUs per project,
preemptions, jobs by state); GPU metrics on DCGM's, labelled by node, GPU, UUID and model, and by
the job and project holding the GPU (empty where it is free or shared). Everything is read from
the running service when scraped: nothing is counted on the hot path for it. A tenant's token
sees its own projects' series, and other tenants' jobs on a GPU only as "in use" (no job label),
as `/api/nodes` shows them; an admin's sees all. One registry per scrape, bound to the caller.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from aifactory.core.explain import pending_kind
from aifactory.core.states import JobState
from aifactory.live.api.auth import Caller
from aifactory.live.service import FactoryService
from aifactory.live.telemetry import MIB, holders_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.PREEMPTED)


class FloorCollector:
    def __init__(self, service: FactoryService, caller: Caller) -> None:
        self.service = service
        self.caller = caller

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        yield from self._projects()
        yield from self._nodes()
        yield from self._gpus()

    def _sees(self, project: str | None) -> bool:
        return project is not None and self.caller.may_use(project)

    def _jobs(self) -> Iterator[Metric]:
        service, sees = self.service, self._sees
        factory = service.factory
        jobs = GaugeMetricFamily("aifactory_jobs", "jobs queued, running or preempted", labels=["state", "project"])
        pending = GaugeMetricFamily(
            "aifactory_pending_jobs", "queued jobs by why they wait", labels=["project", "reason"]
        )
        counts: dict[tuple[str, str], int] = {}
        reasons: dict[tuple[str, str], int] = {}
        for job in factory.jobs.values():
            if job.state not in ACTIVE or not sees(job.spec.project):
                continue
            key = (str(job.state), job.spec.project)
            counts[key] = counts.get(key, 0) + 1
            if job.state is JobState.QUEUED:
                why = (job.spec.project, pending_kind(factory, job))
                reasons[why] = reasons.get(why, 0) + 1
        for (state, project), n in sorted(counts.items()):
            jobs.add_metric([state, project], n)
        for (project, kind), n in sorted(reasons.items()):
            pending.add_metric([project, kind], n)
        yield jobs
        yield pending
        c = service.counters
        for name, doc, values in (
            ("aifactory_jobs_submitted", "jobs submitted since the server started", c.submitted),
            ("aifactory_preemptions", "jobs preempted to give GPUs back", c.preemptions),
            ("aifactory_requeues", "running jobs sent back to the queue (node lost, never started)", c.requeues),
        ):
            family = CounterMetricFamily(name, doc, labels=["project"])
            for project, n in sorted(values.items()):
                if sees(project):
                    family.add_metric([project], n)
            yield family
        finished = CounterMetricFamily(
            "aifactory_jobs_finished", "jobs ended, by final state", labels=["project", "state"]
        )
        for (project, state), n in sorted(c.finished.items()):
            if sees(project):
                finished.add_metric([project, state], n)
        yield finished
        waits = HistogramMetricFamily(
            "aifactory_job_wait_seconds", "submission to first start (Kueue's admission wait)", labels=["project"]
        )
        for project, hist in sorted(c.waits.items()):
            if sees(project):
                waits.add_metric([project], hist.cumulative(), sum_value=hist.total)
        yield waits

    def _projects(self) -> Iterator[Metric]:
        labels = ["project", "department"]
        families = {
            "quota": GaugeMetricFamily("aifactory_project_quota_gpus", "GPUs guaranteed", labels=labels),
            "in_use": GaugeMetricFamily("aifactory_project_in_use_gpus", "GPUs held now", labels=labels),
            "borrowed": GaugeMetricFamily("aifactory_project_borrowed_gpus", "GPUs held over quota", labels=labels),
            "lent": GaugeMetricFamily("aifactory_project_lent_gpus", "idle guarantee others hold", labels=labels),
            "pending": GaugeMetricFamily("aifactory_project_pending_gpus", "GPUs queued jobs ask for", labels=labels),
        }
        for a in self.service.projects():
            if not self._sees(a.project):
                continue
            key = [a.project, a.settings.department or ""]
            for name, value in (
                ("quota", a.settings.quota),
                ("in_use", a.in_use),
                ("borrowed", a.borrowed),
                ("lent", a.lent),
                ("pending", a.pending_gpus),
            ):
                families[name].add_metric(key, value)
        yield from families.values()

    def _nodes(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "aifactory_node_up", "1: the node takes work (alive, not drained)", labels=["node", "pool"]
        )
        gpus = GaugeMetricFamily("aifactory_node_gpus", "GPUs of the node", labels=["node", "pool", "model"])
        held = GaugeMetricFamily("aifactory_node_gpus_allocated", "GPUs held by jobs", labels=["node", "pool"])
        for n in self.service.factory.cluster:
            up.add_metric([n.name, n.pool], 1.0 if n.up else 0.0)
            gpus.add_metric([n.name, n.pool, n.gpu_model], n.gpu_count)
            held.add_metric([n.name, n.pool], (n.gpu_count * 1000 - n.free_milli) / 1000)
        yield from (up, gpus, held)

    def _gpus(self) -> Iterator[Metric]:
        service = self.service
        telemetry = service.telemetry
        labels = ["node", "gpu", "uuid", "model", "job", "project"]
        doc = {
            "utilization_ratio": "share of the last period a kernel ran (NVML)",
            "memory_used_bytes": "memory in use",
            "memory_total_bytes": "memory",
            "power_watts": "power draw",
            "temperature_celsius": "temperature",
        }
        families = {k: GaugeMetricFamily(f"aifactory_gpu_{k}", v, labels=labels) for k, v in doc.items()}
        holders = holders_of(service.factory.cluster)
        jobs = service.factory.jobs
        for (node, index), r in sorted(telemetry.latest.items()):
            held = holders.get((node, index), {})
            job_id = next(iter(held)) if len(held) == 1 else None
            job = jobs.get(job_id) if job_id is not None else None
            project = job.spec.project if job is not None else ""
            shown = job is not None and self._sees(project)
            key = [node, str(index), r.uuid, r.model, str(job_id) if shown else "", project if shown else ""]
            families["utilization_ratio"].add_metric(key, r.utilization / 100)
            families["memory_used_bytes"].add_metric(key, r.memory_used_mib * MIB)
            families["memory_total_bytes"].add_metric(key, r.memory_total_mib * MIB)
            if r.power_w is not None:
                families["power_watts"].add_metric(key, r.power_w)
            if r.temperature_c is not None:
                families["temperature_celsius"].add_metric(key, r.temperature_c)
        yield from families.values()
        used = GaugeMetricFamily(
            "aifactory_job_gpu_memory_used_bytes", "GPU memory the job's processes hold", labels=["job", "project"]
        )
        idle = GaugeMetricFamily(
            "aifactory_job_gpu_idle_seconds",
            "how long the job's GPUs have been below the idle threshold",
            labels=["job", "project"],
        )
        energy = CounterMetricFamily(
            "aifactory_job_gpu_energy_joules", "energy of the job's GPUs", labels=["job", "project"]
        )
        now = telemetry.at or 0.0
        for job_id, usage in sorted(telemetry.jobs.items()):
            job = jobs.get(job_id)
            if job is None or not self._sees(job.spec.project):
                continue
            key = [str(job_id), job.spec.project]
            used.add_metric(key, telemetry.process_memory.get(job_id, 0) * MIB)
            idle.add_metric(key, now - usage.idle_since if usage.idle_since is not None else 0.0)
            energy.add_metric(key, usage.energy_j)
        yield from (used, idle, energy)


def render(service: FactoryService, caller: Caller) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FloorCollector(service, caller))
    return generate_latest(registry)
