"""The dashboard's event model, without Textual."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from callboard.client import Job, JobEvent, NodeEvent, StreamGap
from callboard.jobs import EventType, JobStatus, Progress
from callboard.tui.model import DashboardModel, JobFilter, Rate

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def job(n: int, status: str = "queued", **changes: object) -> Job:
    base = Job(
        id=f"{n:08d}-0000-4000-8000-000000000000",
        company_id="c1",
        job_type="demo.sleep",
        status=JobStatus(status),
        priority=0,
        input={},
        progress=Progress(),
        attempt=1,
        max_attempts=1,
        timeout_seconds=None,
        run_at=T0,
        result_asset_id=None,
        error_message=None,
        source_task_id=f"task-{n}",
        idempotency_key=None,
        created_at=T0 + timedelta(seconds=n),
        started_at=None,
        finished_at=None,
        updated_at=T0 + timedelta(seconds=n),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def event(event_id: int, j: Job, kind: str | None = None) -> JobEvent:
    kind = kind or f"content_job.{j.status}"
    return JobEvent(event_id, EventType(kind), j.id, j.company_id, j.updated_at, j)


def later(j: Job, seconds: float, **changes: object) -> Job:
    return replace(j, updated_at=j.updated_at + timedelta(seconds=seconds), **changes)  # type: ignore[arg-type]


def test_events_move_a_job_through_its_statuses_and_counts() -> None:
    model = DashboardModel()
    j = job(1)
    model.apply(event(1, j), now=100.0)
    running = later(j, 1, status=JobStatus.RUNNING)
    model.apply(event(2, running), now=100.2)
    progressed = later(running, 1, progress=Progress(40, "halfway"))
    model.apply(event(3, progressed, "content_job.progress"), now=100.4)
    assert model.counts["running"] == 1 and model.counts["queued"] == 0
    assert model.jobs[j.id].progress.percent == 40
    model.apply(event(4, later(progressed, 1, status=JobStatus.DONE)), now=101.5)
    assert model.counts == {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0}
    assert model.last_event_id == 4
    changes = model.take_changes()
    assert changes.jobs == {j.id}
    assert [line.split()[1] for line in changes.log] == ["queued", "running", "progress", "done"]
    assert "halfway" in changes.log[2]
    assert model.take_changes().jobs == set()  # taken once
    assert model.finished.series(102.0)[-2:] == [1, 0]


def test_an_older_state_never_overwrites_a_newer_one() -> None:
    model = DashboardModel()
    j = job(1)
    done = later(j, 5, status=JobStatus.DONE)
    model.apply(event(9, done))
    model.load([j])  # a REST page fetched before the job finished
    assert model.jobs[j.id].status == "done"
    model.apply(event(8, later(j, 1, status=JobStatus.RUNNING)))  # replayed out of order
    assert model.jobs[j.id].status == "done"


def test_load_puts_rest_jobs_behind_live_ones_and_counts_them() -> None:
    model = DashboardModel()
    model.apply(event(1, job(10)))
    model.load([job(3, "done"), job(2, "failed"), job(1, "running")])  # newest first
    assert list(model.jobs) == [job(n).id for n in (1, 2, 3, 10)]
    assert model.counts["done"] == 1 and model.counts["failed"] == 1
    every = model.newest_first(JobFilter(), {})
    assert [j.id for j in every] == [job(n).id for n in (10, 3, 2, 1)]


def test_bounded_jobs_and_log() -> None:
    model = DashboardModel(max_jobs=100, max_log=10)
    for n in range(250):
        model.apply(event(n + 1, job(n)))
    assert len(model.jobs) == 100
    assert next(iter(model.jobs)) == job(150).id  # the oldest were forgotten
    assert len(model.log) == 10
    changes = model.take_changes()
    assert len(changes.log) == 10
    assert job(0).id in changes.removed and job(0).id not in changes.jobs
    assert len(changes.jobs) == 100


def test_workers_follow_busy_idle_and_terminal_events() -> None:
    model = DashboardModel()
    j = job(1, "running")
    busy = {"worker": "worker-1", "jobId": j.id, "jobType": "demo.sleep", "companyId": "c1"}
    model.apply(NodeEvent("worker.busy", busy), now=50.0)
    assert model.workers["worker-1"].job_id == j.id
    assert model.workers["worker-1"].since == 50.0
    model.apply(event(2, later(j, 1, status=JobStatus.DONE)))  # worker.idle was missed
    assert model.workers["worker-1"].job_id is None
    model.apply(NodeEvent("worker.busy", busy))
    model.apply(NodeEvent("worker.idle", {"worker": "worker-1", "jobId": j.id}))
    assert model.workers["worker-1"].job_id is None


def test_runtime_stats_set_the_counts_and_a_gap_asks_for_a_reload() -> None:
    model = DashboardModel()
    model.apply(NodeEvent("runtime.stats", {"counts": {"queued": 7, "done": 3}}))
    assert model.counts["queued"] == 7 and model.counts["running"] == 0
    model.load([job(1, "done")])  # server counts win over the local ones
    assert model.counts["queued"] == 7
    model.apply(StreamGap(5, 40, "events before #41 were pruned"))
    changes = model.take_changes()
    assert changes.reload


def test_filter_matches_status_company_type_and_search() -> None:
    j = job(12345, "failed", company_id="cid-1", source_task_id="task-abc")
    assert JobFilter().matches(j)
    assert JobFilter(status="failed").matches(j)
    assert not JobFilter(status="done").matches(j)
    assert JobFilter(company="acme").matches(j, "acme")
    assert JobFilter(company="cid-1").matches(j, "acme")
    assert not JobFilter(company="other").matches(j, "acme")
    assert not JobFilter(job_type="noop").matches(j)
    assert JobFilter(text="00012345").matches(j)
    assert JobFilter(text="task-a").matches(j)
    assert not JobFilter(text="task-x").matches(j)
    assert JobFilter(status="failed", text="task").describe() == "status=failed search=task"


def test_rate_window_is_bounded() -> None:
    rate = Rate(window=10)
    for second in range(100):
        rate.add(float(second), 2)
    assert len(rate.series(99.5)) == 10
    assert rate.per_second(100.0, over=5) == 2
    assert len(rate._buckets) <= 11
