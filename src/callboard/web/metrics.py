"""Prometheus metrics for `/metrics`, on a registry of their own per app.

Counts that live in the store (jobs by status and type, queue depth) are read at
scrape time; job durations are observed as terminal events pass through the node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..jobs import JobEvent, JobStatus
from ..running_board import RunningBoard
from .backlog import Backlog

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _NodeCollector(Collector):
    def __init__(self, rt: RunningBoard, backlog: Backlog) -> None:
        self._rt = rt
        self._backlog = backlog
        self.job_counts: dict[tuple[str, JobStatus], int] = {}

    def collect(self) -> Iterator[Any]:
        jobs = GaugeMetricFamily(
            "callboard_jobs", "Jobs in the store by type and status", labels=["job_type", "status"]
        )
        depth = 0
        for (job_type, status), n in sorted(self.job_counts.items()):
            jobs.add_metric([job_type, str(status)], n)
            if status is JobStatus.QUEUED:
                depth += n
        yield jobs
        yield GaugeMetricFamily("callboard_queue_depth", "Jobs waiting to run", value=depth)
        broker = self._rt.statistics().broker
        yield GaugeMetricFamily(
            "callboard_event_subscribers",
            "Live event subscribers (SSE included)",
            value=broker.subscribers,
        )
        yield CounterMetricFamily(
            "callboard_events_published", "Events published by this node", value=broker.published
        )
        yield CounterMetricFamily(
            "callboard_subscribers_dropped",
            "Subscribers dropped for falling behind",
            value=broker.dropped,
        )
        loop = self._rt.statistics().loop
        yield CounterMetricFamily(
            "callboard_loop_stalls",
            "Times the event loop was blocked for longer than the watchdog's warning limit",
            value=loop.stalls,
        )
        yield GaugeMetricFamily(
            "callboard_loop_stall_longest_seconds",
            "The longest the event loop was blocked",
            value=loop.longest_stall,
        )
        yield CounterMetricFamily(
            "callboard_submits_refused",
            "Submits answered 503 queue_full (the queue over CALLBOARD_MAX_QUEUED)",
            value=self._backlog.refused,
        )
        workers = self._rt.worker_states()
        yield GaugeMetricFamily(
            "callboard_workers_busy",
            "Workers running a job",
            value=sum(1 for w in workers if w.job_id),
        )
        yield GaugeMetricFamily(
            "callboard_workers", "Worker actors on this node", value=len(workers)
        )


class Metrics:
    def __init__(self, rt: RunningBoard, backlog: Backlog) -> None:
        self._rt = rt
        self.registry = CollectorRegistry(auto_describe=True)
        self._node = _NodeCollector(rt, backlog)
        self.registry.register(self._node)
        self.duration = Histogram(
            "callboard_job_duration_seconds",
            "Time from start to end of a job's last attempt",
            ["job_type", "status"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600),
        )
        rt.observe_events(self._observe)

    def _observe(self, event: object) -> None:
        if isinstance(event, JobEvent) and event.terminal:
            job = event.job
            if job.started_at is not None and job.finished_at is not None:
                seconds = (job.finished_at - job.started_at).total_seconds()
                self.duration.labels(job.job_type, str(job.status)).observe(max(0.0, seconds))

    async def render(self) -> bytes:
        self._node.job_counts = await self._rt.store.count_by_type_and_status()
        return generate_latest(self.registry)
