"""The dashboard's picture of the server, built from the operator feed: plain Python,
no Textual, so it is unit-tested on its own and benchmarked (bench/dashboard_events.py).

`DashboardModel.apply(event, now)` folds one event into the known jobs, the counts by
status, the throughput window, the workers map and the event log, and notes which
jobs changed. The screen asks for those changes (`take_changes()`) a few times a
second and redraws only them: applying an event costs microseconds, drawing it does
not, so the two are decoupled.

Everything is bounded: at most `max_jobs` jobs (the oldest known are forgotten first),
`max_log` log lines, `window` seconds of throughput.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..client import Event, Job, JobEvent, JobStatus, NodeEvent, StreamGap

STATUSES: tuple[str, ...] = tuple(str(s) for s in JobStatus)
TERMINAL: frozenset[str] = frozenset({"done", "failed", "cancelled"})


@dataclass
class Worker:
    """One worker as the feed last described it: idle (`job_id` None) or busy since
    `since` (a monotonic time)."""

    name: str
    job_id: str | None = None
    job_type: str | None = None
    company_id: str | None = None
    since: float | None = None


@dataclass(frozen=True)
class JobFilter:
    """What the table shows: every field that is set must match. `status` is a set of
    statuses (any of them matches; a single status string is taken as a set of one).
    `text` matches a prefix of the job id or the source task id, or (anywhere) the id."""

    status: frozenset[str] | str | None = None
    company: str | None = None  # a company id or name
    job_type: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        status = self.status
        statuses = frozenset((status,) if isinstance(status, str) else status or ())
        object.__setattr__(self, "status", statuses or None)

    @property
    def statuses(self) -> frozenset[str]:
        return self.status if isinstance(self.status, frozenset) else frozenset()

    @property
    def active(self) -> bool:
        return any((self.status, self.company, self.job_type, self.text))

    def matches(self, job: Job, company_name: str | None = None) -> bool:
        if self.status and str(job.status) not in self.statuses:
            return False
        if self.company and self.company not in (job.company_id, company_name):
            return False
        if self.job_type and job.job_type != self.job_type:
            return False
        if self.text:
            text = self.text.strip().lower()
            source = (job.source_task_id or "").lower()
            if text not in job.id.lower() and not source.startswith(text):
                return False
        return True

    def describe(self) -> str:
        statuses = ",".join(s for s in STATUSES if s in self.statuses)
        parts = [
            f"{name}={value}"
            for name, value in (
                ("status", statuses),
                ("company", self.company),
                ("type", self.job_type),
                ("search", self.text),
            )
            if value
        ]
        return " ".join(parts) or "all jobs"


@dataclass
class Changes:
    """What changed since the last `take_changes()`: jobs to draw or redraw, jobs
    forgotten, and new log lines; `reload` when the feed said state must be reloaded."""

    jobs: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    reload: bool = False


class Rate:
    """Counts per whole second over the last `window` seconds (for the sparkline and
    the events/s figure); memory is bounded by the window."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._buckets: deque[list[float]] = deque()  # [second, count], oldest first

    def add(self, now: float, n: int = 1) -> None:
        second = float(int(now))
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([second, n])
            while self._buckets and self._buckets[0][0] <= second - self.window:
                self._buckets.popleft()

    def series(self, now: float) -> list[float]:
        """One count per second, oldest first, the current (partial) second last."""
        end = int(now)
        counts = dict((int(s), c) for s, c in self._buckets)
        return [counts.get(s, 0) for s in range(end - self.window + 1, end + 1)]

    def per_second(self, now: float, over: int = 5) -> float:
        """The mean over the last `over` complete seconds."""
        end = int(now)
        total = sum(c for s, c in self._buckets if end - over <= s < end)
        return total / over


class DashboardModel:
    def __init__(self, *, max_jobs: int = 10_000, max_log: int = 300, window: int = 180) -> None:
        self.max_jobs = max_jobs
        self.jobs: OrderedDict[str, Job] = OrderedDict()  # oldest known first
        self.counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        self.workers: dict[str, Worker] = {}
        self.company_names: dict[str, str] = {}  # by id: the feed carries ids only
        self.log: deque[str] = deque(maxlen=max_log)
        self.finished = Rate(window)  # jobs reaching a terminal state, per second
        self.events = Rate(window)  # every event applied, per second
        self.last_event_id: int | None = None
        self.applied = 0
        self._changes = Changes()
        self._server_counts = False  # whether `counts` came from runtime.stats
        #: Every node's (running, queued) jobs by company id, from the server's stats.
        self.company_loads: dict[str, tuple[int, int]] = {}

    # --- folding events in ----------------------------------------------------------

    def apply(self, event: Event, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.applied += 1
        self.events.add(now)
        if isinstance(event, JobEvent):
            self._apply_job_event(event, now)
        elif isinstance(event, NodeEvent):
            self._apply_node_event(event, now)
        elif isinstance(event, StreamGap):
            self._changes.reload = True
            self._log(f"gap: {event.message}")

    def apply_all(self, events: Iterable[Event], now: float | None = None) -> None:
        for event in events:
            self.apply(event, now)

    def _apply_job_event(self, event: JobEvent, now: float) -> None:
        job = event.job
        if self.last_event_id is None or event.id > self.last_event_id:
            self.last_event_id = event.id
        old = self.jobs.get(job.id)
        if old is not None and job.updated_at < old.updated_at:
            return  # a REST snapshot already showed a later state of this job
        new_status = str(job.status)
        old_status = str(old.status) if old is not None else None
        if old_status != new_status:
            if old_status is not None:
                self.counts[old_status] = max(0, self.counts[old_status] - 1)
            self.counts[new_status] = self.counts.get(new_status, 0) + 1
            if new_status in TERMINAL:
                self.finished.add(now)
        self._store(job)
        if new_status in TERMINAL:
            # The worker that ran it is free, even if its worker.idle was missed.
            for worker in self.workers.values():
                if worker.job_id == job.id:
                    worker.job_id = worker.job_type = worker.company_id = None
                    worker.since = None
        self._log(_describe(event))

    def _apply_node_event(self, event: NodeEvent, now: float) -> None:
        data = event.data
        if event.type == "runtime.stats":
            counts = data.get("counts")
            if isinstance(counts, dict):
                self.counts = {s: int(counts.get(s, 0)) for s in STATUSES}
                self._server_counts = True
            loads = data.get("companies")
            if isinstance(loads, dict):
                self.company_loads = {
                    str(c): (int(n.get("running", 0)), int(n.get("queued", 0)))
                    for c, n in loads.items()
                    if isinstance(n, dict)
                }
            return  # once a second: not worth a log line
        name = str(data.get("worker", "?"))
        worker = self.workers.setdefault(name, Worker(name))
        if event.type == "worker.busy":
            worker.job_id = data.get("jobId")
            worker.job_type = data.get("jobType")
            worker.company_id = data.get("companyId")
            worker.since = now
        elif event.type == "worker.idle":
            if worker.job_id == data.get("jobId"):
                worker.job_id = worker.job_type = worker.company_id = None
                worker.since = None
        else:
            self._log(f"{event.type} {dict(data)}")

    def load(self, jobs: Iterable[Job]) -> None:
        """Jobs from the REST API (newest first). A job the feed already showed in a
        later state keeps that state, so loading and following can overlap."""
        for job in jobs:
            old = self.jobs.get(job.id)
            if old is not None and old.updated_at >= job.updated_at:
                continue
            if old is None and len(self.jobs) >= self.max_jobs:
                break  # full, and the rest are older still
            if old is None:
                self.jobs[job.id] = job
                self.jobs.move_to_end(job.id, last=False)  # older than all the live ones
                self._changes.jobs.add(job.id)
            else:
                self.jobs[job.id] = job
                self._changes.jobs.add(job.id)
        if not self._server_counts:
            self.counts = dict.fromkeys(STATUSES, 0)
            for job in self.jobs.values():
                self.counts[str(job.status)] = self.counts.get(str(job.status), 0) + 1

    def load_workers(self, stats: dict, now: float | None = None) -> None:
        """Seed the workers map and counts from `GET /api/stats`."""
        now = time.monotonic() if now is None else now
        for item in stats.get("workers") or []:
            worker = self.workers.setdefault(item["name"], Worker(item["name"]))
            worker.job_id = item.get("jobId")
            worker.job_type = item.get("jobType")
            running = item.get("runningSeconds")
            worker.since = now - float(running) if worker.job_id and running is not None else None
        counts = stats.get("counts")
        if isinstance(counts, dict):
            self.counts = {s: int(counts.get(s, 0)) for s in STATUSES}
            self._server_counts = True
        companies = stats.get("companies")
        if isinstance(companies, list):
            self.company_loads = {
                c["id"]: (int(c.get("running", 0)), int(c.get("queued", 0)))
                for c in companies
                if c.get("running") or c.get("queued")
            }

    def company_summary(self, limit: int = 6) -> list[tuple[str, int, int]]:
        """(name, running, queued) of the busiest companies, most running then queued
        first: what the summary shows, so one company's backlog and another's share
        of the workers are seen side by side."""
        busiest = sorted(self.company_loads.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
        return [
            (self.company_names.get(c, c[:8]), running, queued)
            for c, (running, queued) in busiest[:limit]
            if running or queued
        ]

    def load_companies(self, companies: Iterable[dict]) -> None:
        """The names from `GET /api/companies`."""
        self.company_names = {c["id"]: c["name"] for c in companies}

    def _store(self, job: Job) -> None:
        known = job.id in self.jobs
        self.jobs[job.id] = job
        if not known:
            while len(self.jobs) > self.max_jobs:
                gone, _ = self.jobs.popitem(last=False)
                self._changes.removed.add(gone)
                self._changes.jobs.discard(gone)
        self._changes.jobs.add(job.id)

    def _log(self, line: str) -> None:
        self.log.append(line)
        self._changes.log.append(line)

    # --- what the screen reads --------------------------------------------------------

    def take_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        if len(changes.log) > self.log.maxlen:  # type: ignore[operator]
            changes.log = changes.log[-self.log.maxlen :]  # type: ignore[misc]
        return changes

    def newest_first(self, job_filter: JobFilter, names: dict[str, str]) -> list[Job]:
        return [
            job
            for job in reversed(self.jobs.values())
            if job_filter.matches(job, names.get(job.company_id))
        ]

    def company_ids(self) -> set[str]:
        return {job.company_id for job in self.jobs.values()}

    def job_types(self) -> list[str]:
        return sorted({job.job_type for job in self.jobs.values()})


def _describe(event: JobEvent) -> str:
    job = event.job
    kind = str(event.type).removeprefix("content_job.")
    line = f"#{event.id} {kind:<9} {job.id[:8]} {job.job_type}"
    if kind == "progress":
        line += f" {job.progress.percent:g}%"
        if job.progress.message:
            line += f" {job.progress.message}"
    if job.error_message and kind in ("failed", "retrying"):
        line += f" error: {job.error_message}"
    return line
