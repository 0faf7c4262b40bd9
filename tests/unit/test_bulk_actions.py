"""Bulk retry and cancel walk the matches a page at a time (store/bulk.py): every match
once, whatever the page size, with what was skipped and what changed meanwhile
counted; the prune deletes in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callboard.errors import InvalidRequest
from callboard.jobs import Job, JobFilter, JobStatus, NewJob, new_id
from callboard.store.bulk import bulk_apply, prune_finished
from callboard.store.memory import MemoryStore

pytestmark = pytest.mark.trio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def new_job(company_id: str, job_type: str = "noop") -> NewJob:
    return NewJob(
        id=new_id(),
        company_id=company_id,
        job_type=job_type,
        input={},
        priority=0,
        max_attempts=1,
        timeout_seconds=None,
        run_at=T0,
        source_task_id=None,
        idempotency_key=None,
    )


async def failed_jobs(store: MemoryStore, company_id: str, n: int, at: datetime) -> list[str]:
    inserted = await store.insert_jobs([new_job(company_id) for _ in range(n)], at)
    taken = await store.claim(
        now=at, limit=n, type_caps={"noop": None}, lease_owner="w", lease_expires_at=at
    )
    for job, _ in taken:
        await store.fail(job.id, "w", at, "boom")
    return [i.job.id for i in inserted]


async def opened() -> MemoryStore:
    store = MemoryStore()
    await store.open()
    return store


@pytest.mark.parametrize("batch", [1, 2, 3, 500])
async def test_every_match_is_retried_once_whatever_the_page(batch):
    store = await opened()
    company = (await store.create_company("acme", T0)).id
    ids = []
    for i in range(7):  # several per creation time, across pages
        ids += await failed_jobs(store, company, 1, T0 + timedelta(seconds=i // 2))
    await store.insert_jobs([new_job(company)], T0)  # queued: skipped
    seen: list[str] = []

    async def retry(job_id: str) -> Job:
        seen.append(job_id)
        await store.retry(job_id, T0)
        return await store.get_job(job_id)  # type: ignore[return-value]

    report = await bulk_apply(store, retry, "retry", JobFilter(company), batch=batch)
    assert sorted(seen) == sorted(ids)
    assert (report.matched, report.eligible, report.applied) == (8, 7, 7)
    assert report.skipped == {"queued": 1} and report.changed == 0
    counts = await store.count_by_status(company)
    assert counts[JobStatus.QUEUED] == 8 and counts[JobStatus.FAILED] == 0


async def test_a_job_that_changed_meanwhile_is_counted_and_left_alone():
    store = await opened()
    company = (await store.create_company("acme", T0)).id
    ids = await failed_jobs(store, company, 3, T0)

    async def retry(job_id: str) -> Job:
        if job_id == ids[1]:
            await store.retry(job_id, T0)  # another operator got there first
        await store.retry(job_id, T0)
        return await store.get_job(job_id)  # type: ignore[return-value]

    report = await bulk_apply(
        store, retry, "retry", JobFilter(company, frozenset({JobStatus.FAILED}))
    )
    assert (report.applied, report.changed) == (2, 1)


async def test_a_dry_run_only_counts():
    store = await opened()
    company = (await store.create_company("acme", T0)).id
    await failed_jobs(store, company, 2, T0)

    async def refuse(job_id: str) -> Job:
        raise AssertionError("a dry run acted")

    report = await bulk_apply(store, refuse, "cancel", JobFilter(company), dry_run=True)
    assert (report.matched, report.eligible, report.applied) == (2, 0, 0)
    assert report.skipped == {"failed": 2}
    with pytest.raises(InvalidRequest):
        await bulk_apply(store, refuse, "retry", JobFilter(company, source_task_id="t"))


async def test_the_prune_deletes_in_batches_until_none_is_left():
    store = await opened()
    company = (await store.create_company("acme", T0)).id
    await failed_jobs(store, company, 7, T0)
    later = T0 + timedelta(days=2)
    dry = await prune_finished(store, later, 86400, dry_run=True)
    assert (dry.matched, dry.deleted) == (7, 0)
    report = await prune_finished(store, later, 86400, batch=3)
    assert (report.matched, report.deleted) == (7, 7)
    assert report.to_dict()["finishedBefore"] == "2030-01-02T00:00:00.000000Z"
    assert (await store.list_jobs(company)).items == []
