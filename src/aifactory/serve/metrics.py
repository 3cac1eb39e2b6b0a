"""Prometheus exposition of the server's counters (GET /metrics).

Read from the runtime's own counters when scraped, so the hot path pays nothing for them; one
registry per app, so several servers in one process (tests, an embedded factory) stay apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from aifactory.serve.server import Serving

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServingCollector:
    """Counters and gauges of one `Serving` runtime, prefixed `aifactory_serve_`."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving

    def collect(self) -> Iterator[Metric]:
        info = self.serving.info()
        counters = {
            "requests": ("predict requests answered by the live model", info.requests),
            "batches": ("model calls of the live batcher", info.batches),
            "swaps": ("hot swaps of the live model", info.swaps),
            "shadow_answered": ("requests the shadow model answered", info.shadow_answered),
            "shadow_dropped": ("request copies not sent to the shadow", info.shadow_dropped),
            "log_dropped": ("prediction rows lost because the log fell behind", info.log_dropped),
            "log_errors": ("failed prediction log writes", info.log_errors),
            "model_cpu_seconds": ("CPU seconds of the live model's calls", info.model_cpu_s),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"aifactory_serve_{name}", doc, value=value)
        version = GaugeMetricFamily("aifactory_serve_model_version", "version answering live traffic", labels=["model"])
        version.add_metric([info.model], info.version)
        yield version
        yield GaugeMetricFamily(
            "aifactory_serve_batch_rows_mean", "mean rows per model call", value=info.mean_batch_rows
        )
        yield GaugeMetricFamily(
            "aifactory_serve_queued", "requests waiting for a batch", value=self.serving.batcher.queued
        )


def metrics_registry(serving: Serving) -> CollectorRegistry:
    """A registry of its own holding `serving`'s collector; render it with `generate_latest`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServingCollector(serving))
    return registry
