"""The JobStore contract: every rule in `callboard.store.base`, as tests.

`StoreContract` runs against the parametrised `store` fixture in `conftest.py`
(one opened store per kind), so a new implementation joins by adding a fixture
param. Times are always explicit (`now=`), never the wall clock: the suite runs
on real threads for SQLite, where trio's virtual clock must not be used.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import trio

from callboard.errors import (
    CompanyExists,
    CompanyNotFound,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
)
from callboard.jobs import (
    WORKER_LOST,
    WORKER_LOST_TYPE,
    Asset,
    EventType,
    Job,
    JobEvent,
    JobStatus,
    NewJob,
    Progress,
    encode_result,
    new_id,
)
from callboard.store.base import JobStore, NodeInfo

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
LEASE = T0 + timedelta(seconds=30)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_asset(
    company_id: str,
    *,
    job_id: str | None = None,
    source_task_id: str | None = None,
    created_at: datetime = T0,
    name: str = "out.bin",
    key: str | None = None,
) -> Asset:
    asset_id = new_id()
    return Asset(
        id=asset_id,
        company_id=company_id,
        namespace="generated" if job_id else "uploads",
        object_key=key or f"{company_id}/uploads/2030/01/01/{asset_id}-{name}",
        content_type="application/octet-stream",
        byte_size=42,
        sha256="ab" * 32,
        original_filename=name,
        source_task_id=source_task_id,
        created_by_job_id=job_id,
        created_at=created_at,
    )


def make_job(
    company_id: str,
    job_type: str = "noop",
    *,
    priority: int = 0,
    run_at: datetime = T0,
    key: str | None = None,
    max_attempts: int = 1,
    source_task_id: str | None = None,
    input: dict | None = None,
    timeout: float | None = None,
) -> NewJob:
    return NewJob(
        id=new_id(),
        company_id=company_id,
        job_type=job_type,
        input=input if input is not None else {},
        priority=priority,
        max_attempts=max_attempts,
        timeout_seconds=timeout,
        run_at=run_at,
        source_task_id=source_task_id,
        idempotency_key=key,
    )


async def company(store: JobStore, name: str = "acme", now: datetime = T0) -> str:
    return (await store.create_company(name, now)).id


async def submit(store: JobStore, company_id: str, now: datetime = T0, **kw) -> Job:
    [inserted] = await store.insert_jobs([make_job(company_id, **kw)], now)
    return inserted.job


async def claim(
    store: JobStore,
    *,
    now: datetime = T0,
    owner: str = "w1",
    lease: datetime = LEASE,
    caps: dict[str, int | None] | None = None,
    limit: int = 100,
) -> list[Job]:
    taken = await store.claim(
        now=now,
        limit=limit,
        type_caps=caps if caps is not None else {"noop": None},
        lease_owner=owner,
        lease_expires_at=lease,
    )
    return [job for job, _ in taken]


async def running(store: JobStore, company_id: str, owner: str = "w1", **kw) -> Job:
    job = await submit(store, company_id, **kw)
    [taken] = await claim(store, owner=owner, caps={job.job_type: None})
    assert taken.id == job.id
    return taken


async def expect_one_event(
    store: JobStore, before: int, event: JobEvent | None, type_: EventType, now: datetime
) -> Job:
    """The state change wrote exactly `event`, and its snapshot is the job as stored now."""
    assert event is not None
    assert await store.events_after(before) == [event]
    assert event.type == type_
    assert event.created_at == now
    job = await store.get_job(event.job_id)
    assert job is not None
    assert event.company_id == job.company_id
    assert event.job.to_dict() == job.to_dict()
    assert await store.latest_event(job.id) == event
    return job


async def expect_unchanged(store: JobStore, job: Job, before: int) -> None:
    assert await store.get_job(job.id) == job
    assert await store.last_event_id() == before


def starts_on_insert(store: JobStore) -> None:
    if type(store).insert_running is JobStore.insert_running:
        pytest.skip(f"{type(store).__name__} does not start jobs on insert")


class StoreContract:
    pytestmark = pytest.mark.trio

    # --- lifecycle -------------------------------------------------------------------

    async def test_ping_and_idempotent_aclose(self, store: JobStore) -> None:
        await store.ping()
        await store.aclose()
        await store.aclose()

    async def test_naive_datetimes_are_refused(self, store: JobStore) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            await store.create_company("acme", datetime(2030, 1, 1))

    # --- companies -------------------------------------------------------------------

    async def test_companies(self, store: JobStore) -> None:
        assert await store.list_companies() == []
        b = await store.create_company("beta", at(2))
        a = await store.create_company("acme", at(1))
        upper = await store.create_company("Acme", at(3))  # names are case-sensitive
        assert a.name == "acme" and a.created_at == at(1)
        assert await store.get_company(a.id) == a
        assert await store.get_company_by_name("beta") == b
        assert await store.get_company_by_name("ACME") is None
        assert await store.get_company(new_id()) is None
        assert await store.list_companies() == [a, b, upper]

    async def test_company_name_taken(self, store: JobStore) -> None:
        await store.create_company("acme", T0)
        with pytest.raises(CompanyExists) as info:
            await store.create_company("acme", at(1))
        assert info.value.name == "acme"
        assert len(await store.list_companies()) == 1

    # --- insert ----------------------------------------------------------------------

    async def test_insert_sets_defaults_and_writes_queued_events(self, store: JobStore) -> None:
        c = await company(store)
        new = [
            make_job(
                c,
                "render",
                priority=5,
                run_at=at(60),
                max_attempts=3,
                source_task_id="task-7",
                input={"a": [1, 2, {"b": None}], "s": "é"},
                timeout=12.5,
            ),
            make_job(c, key="k1"),
        ]
        before = await store.last_event_id()
        inserted = await store.insert_jobs(new, at(1))
        assert [i.job.id for i in inserted] == [n.id for n in new]
        first = inserted[0].job
        assert inserted[0].created and inserted[1].created
        assert first.status == JobStatus.QUEUED
        assert first.attempt == 0 and first.progress == Progress(0, None)
        assert (first.company_id, first.job_type, first.priority) == (c, "render", 5)
        assert first.input == {"a": [1, 2, {"b": None}], "s": "é"}
        assert first.max_attempts == 3 and first.timeout_seconds == 12.5
        assert first.run_at == at(60) and first.source_task_id == "task-7"
        assert first.created_at == first.updated_at == at(1)
        assert first.started_at is None and first.finished_at is None
        assert first.result_asset_id is None and first.error_message is None
        assert first.lease_owner is None and not first.cancel_requested
        assert inserted[1].job.idempotency_key == "k1"
        assert await store.get_job(first.id) == first
        events = await store.events_after(before)
        assert events == [i.event for i in inserted]
        for i in inserted:
            assert i.event is not None and i.event.type == EventType.QUEUED
            assert i.event.job.to_dict() == i.job.to_dict()
            assert i.event.created_at == at(1)

    async def test_insert_empty_batch(self, store: JobStore) -> None:
        assert await store.insert_jobs([], T0) == []

    async def test_unknown_company_writes_nothing(self, store: JobStore) -> None:
        c = await company(store)
        ghost = new_id()
        with pytest.raises(CompanyNotFound) as info:
            await store.insert_jobs([make_job(c), make_job(ghost), make_job(c)], T0)
        assert info.value.company_id == ghost
        assert (await store.list_jobs(None)).items == []
        assert await store.last_event_id() == 0

    async def test_input_must_be_json(self, store: JobStore) -> None:
        c = await company(store)
        with pytest.raises(InvalidRequest):
            await store.insert_jobs([make_job(c), make_job(c, input={"x": object()})], T0)
        assert (await store.list_jobs(None)).items == []

    async def test_duplicate_job_id_writes_nothing(self, store: JobStore) -> None:
        c = await company(store)
        job = make_job(c)
        with pytest.raises(InvalidRequest):
            await store.insert_jobs([job, make_job(c), job], T0)
        assert (await store.list_jobs(None)).items == []
        await store.insert_jobs([job], T0)
        with pytest.raises(InvalidRequest):
            await store.insert_jobs([make_job(c), job], T0)
        assert len((await store.list_jobs(None)).items) == 1

    async def test_idempotency_key_returns_the_existing_job(self, store: JobStore) -> None:
        c = await company(store)
        other = await company(store, "other")
        first = await submit(store, c, key="k")
        before = await store.last_event_id()
        [again, fresh] = await store.insert_jobs([make_job(c, key="k"), make_job(c)], at(5))
        assert not again.created and again.event is None
        assert again.job == first
        assert fresh.created
        assert await store.last_event_id() == before + 1
        # Keys are per company, and no key never deduplicates.
        [elsewhere] = await store.insert_jobs([make_job(other, key="k")], at(6))
        assert elsewhere.created
        no_keys = await store.insert_jobs([make_job(c), make_job(c)], at(7))
        assert all(i.created for i in no_keys)

    async def test_idempotency_key_within_one_batch(self, store: JobStore) -> None:
        c = await company(store)
        batch = [make_job(c, key="a"), make_job(c, key="b"), make_job(c, key="a")]
        first, second, third = await store.insert_jobs(batch, T0)
        assert first.created and second.created
        assert not third.created and third.event is None
        assert third.job == first.job
        assert len((await store.list_jobs(c)).items) == 2

    async def test_idempotent_job_comes_back_as_it_is_now(self, store: JobStore) -> None:
        c = await company(store)
        await submit(store, c, key="k")
        [job] = await claim(store)
        [again] = await store.insert_jobs([make_job(c, key="k")], at(1))
        assert again.job == await store.get_job(job.id)
        assert again.job.status == JobStatus.RUNNING

    # --- reading ---------------------------------------------------------------------

    async def test_get_unknown_job(self, store: JobStore) -> None:
        assert await store.get_job(new_id()) is None

    async def test_count_queued_counts_due_jobs_up_to_its_bound(self, store: JobStore) -> None:
        c = await company(store)
        other = await company(store, "other")
        for _ in range(3):
            await submit(store, c)
        await submit(store, other)
        await submit(store, c, run_at=at(60))  # not due yet
        await claim(store, limit=1)  # running now, not queued
        assert await store.count_queued(at(1), 100) == 3
        assert await store.count_queued(at(1), 2) == 2
        assert await store.count_queued(at(60), 100) == 4
        assert await store.count_queued(at(1), 0) == 0

    async def test_list_filters(self, store: JobStore) -> None:
        c = await company(store)
        other = await company(store, "other")
        a = await submit(store, c, job_type="noop", source_task_id="t1")
        b = await submit(store, c, now=at(1), job_type="render", source_task_id="t1")
        d = await submit(store, other, now=at(2), job_type="noop")
        await claim(store, now=at(3), caps={"render": None})
        ids = lambda page: [j.id for j in page.items]  # noqa: E731
        assert ids(await store.list_jobs(None)) == [d.id, b.id, a.id]
        assert ids(await store.list_jobs(c)) == [b.id, a.id]
        assert ids(await store.list_jobs(other)) == [d.id]
        assert ids(await store.list_jobs(new_id())) == []
        assert ids(await store.list_jobs(c, status=JobStatus.RUNNING)) == [b.id]
        assert ids(await store.list_jobs(None, status=JobStatus.QUEUED)) == [d.id, a.id]
        assert ids(await store.list_jobs(None, job_type="noop")) == [d.id, a.id]
        assert ids(await store.list_jobs(c, job_type="noop", source_task_id="t1")) == [a.id]
        assert ids(await store.list_jobs(None, source_task_id="t1")) == [b.id, a.id]
        assert ids(await store.list_jobs(c, status=JobStatus.DONE)) == []

    async def test_list_of_several_statuses_merges_newest_first(self, store: JobStore) -> None:
        c = await company(store)
        other = await company(store, "other")
        jobs = [await submit(store, c if i % 2 else other, now=at(i)) for i in range(8)]
        # 0..2 running (claimed oldest first), 3 failed, 4 cancelled, 5..7 queued.
        await claim(store, now=at(10), limit=4)
        await store.fail(jobs[3].id, "w1", at(11), "boom")
        await store.cancel(jobs[4].id, at(11))
        ids = lambda page: [j.id for j in page.items]  # noqa: E731
        active = {JobStatus.QUEUED, JobStatus.RUNNING}
        expected = [jobs[i].id for i in (7, 6, 5, 2, 1, 0)]
        assert ids(await store.list_jobs(None, status=active)) == expected
        assert ids(await store.list_jobs(c, status=active)) == [jobs[i].id for i in (7, 5, 1)]
        ended = [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.DONE]
        assert ids(await store.list_jobs(None, status=ended)) == [jobs[4].id, jobs[3].id]
        assert ids(await store.list_jobs(None, status=[])) == []
        # Pages of a merged list follow one another without a gap or a repeat.
        seen, cursor = [], None
        while True:
            page = await store.list_jobs(None, status=active, limit=4, cursor=cursor)
            seen += ids(page)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected

    async def test_list_by_creation_time(self, store: JobStore) -> None:
        c = await company(store)
        jobs = [await submit(store, c, now=at(60 * i)) for i in range(4)]
        ids = lambda page: [j.id for j in page.items]  # noqa: E731
        # created_after is inclusive, created_before exclusive.
        assert ids(await store.list_jobs(c, created_after=at(60))) == [
            jobs[3].id,
            jobs[2].id,
            jobs[1].id,
        ]
        assert ids(await store.list_jobs(None, created_before=at(120))) == [jobs[1].id, jobs[0].id]
        window = await store.list_jobs(
            c, status=JobStatus.QUEUED, created_after=at(30), created_before=at(150)
        )
        assert ids(window) == [jobs[2].id, jobs[1].id]
        counts = await store.count_by_status(c, created_before=at(120))
        assert counts[JobStatus.QUEUED] == 2 and sum(counts.values()) == 2

    async def test_count_by_status_filters(self, store: JobStore) -> None:
        c = await company(store)
        other = await company(store, "other")
        await submit(store, c, job_type="render")
        await submit(store, c, job_type="noop", now=at(5))
        await submit(store, other, job_type="render", now=at(10))
        await claim(store, now=at(20), caps={"render": None}, limit=1)
        everything = await store.count_by_status()
        assert everything[JobStatus.QUEUED] == 2 and everything[JobStatus.RUNNING] == 1
        assert set(everything) == set(JobStatus)
        renders = await store.count_by_status(job_type="render")
        assert renders[JobStatus.RUNNING] == 1 and renders[JobStatus.QUEUED] == 1
        mine = await store.count_by_status(c, job_type="render")
        assert mine[JobStatus.RUNNING] == 1 and mine[JobStatus.QUEUED] == 0
        late = await store.count_by_status(created_after=at(5))
        assert late[JobStatus.QUEUED] == 2 and late[JobStatus.RUNNING] == 0

    async def test_list_pagination_newest_first(self, store: JobStore) -> None:
        c = await company(store)
        other = await company(store, "other")
        created = []
        for i in range(23):
            # Pairs share created_at, so the id breaks ties.
            [ins] = await store.insert_jobs([make_job(c)], at(i // 2))
            created.append(ins.job)
            await store.insert_jobs([make_job(other)], at(i // 2))
        expected = [j.id for j in sorted(created, key=lambda j: (j.created_at, j.id), reverse=True)]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await store.list_jobs(c, limit=5, cursor=cursor)
            pages += 1
            seen += [j.id for j in page.items]
            if page.next_cursor is None:
                break
            assert len(page.items) == 5
            cursor = page.next_cursor
        assert seen == expected
        assert pages == 5
        # An exact multiple of the page size ends without an empty extra page.
        first = await store.list_jobs(None, limit=23)
        second = await store.list_jobs(None, limit=23, cursor=first.next_cursor)
        assert second.next_cursor is None and len(second.items) == 23
        assert not {j.id for j in first.items} & {j.id for j in second.items}

    async def test_bad_cursor(self, store: JobStore) -> None:
        c = await company(store)
        for cursor in ["", "garbage", "!!!", "djE=", "eHx5fHo", "12_x", "1_" + "A" * 36]:
            with pytest.raises(InvalidRequest):
                await store.list_jobs(c, cursor=cursor)

    async def test_any_cursor_of_the_public_shape_is_a_position(self, store: JobStore) -> None:
        c = await company(store)
        await submit(store, c)
        some_id = "00000000-0000-4000-8000-000000000000"
        assert (await store.list_jobs(c, cursor=f"0_{some_id}")).items == []
        everything = await store.list_jobs(c, cursor=f"{'9' * 16}_{some_id}")
        assert len(everything.items) == 1
        assert (await store.list_assets(c, cursor=f"0_{some_id}")).items == []

    async def test_limits(self, store: JobStore) -> None:
        c = await company(store)
        await submit(store, c)
        for bad in (0, -1):
            with pytest.raises(InvalidRequest):
                await store.list_jobs(c, limit=bad)
            with pytest.raises(InvalidRequest):
                await store.events_after(0, limit=bad)
        assert await claim(store, limit=0) == []
        assert await claim(store, limit=-1) == []
        [job] = await claim(store, lease=at(1))
        assert job is not None
        assert (
            await store.reap_expired(now=at(5), expired_before=at(5), retry_at=at(5), limit=0) == []
        )

    async def test_count_by_status(self, store: JobStore) -> None:
        assert await store.count_by_status() == dict.fromkeys(JobStatus, 0)
        c = await company(store)
        other = await company(store, "other")
        await submit(store, c)
        await submit(store, c)
        await submit(store, other)
        [job] = await claim(store, limit=1)
        await store.complete(job.id, "w1", at(1))
        counts = await store.count_by_status()
        assert counts == {**dict.fromkeys(JobStatus, 0), JobStatus.QUEUED: 2, JobStatus.DONE: 1}
        mine = await store.count_by_status(other)
        assert set(mine) == set(JobStatus)
        assert sum(mine.values()) == 1

    async def test_next_run_at(self, store: JobStore) -> None:
        assert await store.next_run_at(["noop"]) is None
        c = await company(store)
        await submit(store, c, run_at=at(50))
        await submit(store, c, run_at=at(20))
        await submit(store, c, job_type="render", run_at=at(5))
        await submit(store, c, run_at=at(-10))
        await claim(store, now=T0)  # the one due at -10 is now running, not queued
        assert await store.next_run_at(["noop"]) == at(20)
        assert await store.next_run_at(["noop", "render"]) == at(5)
        assert await store.next_run_at(["other"]) is None
        assert await store.next_run_at([]) is None

    # --- claim -----------------------------------------------------------------------

    async def test_claim_sets_running_fields_and_events(self, store: JobStore) -> None:
        c = await company(store)
        job = await submit(store, c, max_attempts=2)
        before = await store.last_event_id()
        [(taken, event)] = await store.claim(
            now=at(1), limit=10, type_caps={"noop": None}, lease_owner="w1", lease_expires_at=at(31)
        )
        assert taken.id == job.id
        assert taken.status == JobStatus.RUNNING and taken.attempt == 1
        assert taken.started_at == at(1) and taken.finished_at is None
        assert taken.lease_owner == "w1" and taken.lease_expires_at == at(31)
        assert taken.updated_at == at(1)
        assert await store.get_job(job.id) == taken
        assert await expect_one_event(store, before, event, EventType.RUNNING, at(1)) == taken

    async def test_claim_resets_progress_and_counts_attempts(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c, max_attempts=3)
        await store.record_progress(job.id, "w1", 70, "late", at(1))
        await store.fail(job.id, "w1", at(2), "boom", retry_at=at(3))
        [again] = await claim(store, now=at(3), owner="w2")
        assert again.attempt == 2 and again.progress == Progress(0, None)
        assert again.started_at == at(3) and again.lease_owner == "w2"
        assert again.error_message == "boom"  # kept until this attempt ends

    async def test_claim_order(self, store: JobStore) -> None:
        c = await company(store)
        low = await submit(store, c, priority=-1)
        late = await submit(store, c, priority=5, run_at=at(-1))
        early = await submit(store, c, priority=5, run_at=at(-2))
        newer = await submit(store, c, now=at(1), priority=0, run_at=at(-3))
        older = await submit(store, c, now=at(0), priority=0, run_at=at(-3))
        twins = [make_job(c, run_at=at(-3)) for _ in range(3)]
        await store.insert_jobs(twins, at(0))
        taken = await claim(store, now=at(2))
        # Same priority, run_at and created_at: submission order decides (FIFO), also
        # within one batch.
        same_time = [older.id, *(t.id for t in twins)]
        assert [j.id for j in taken] == [early.id, late.id, *same_time, newer.id, low.id]

    # --- started on insert -------------------------------------------------------------

    async def test_insert_running_starts_the_job_with_both_events(self, store: JobStore) -> None:
        starts_on_insert(store)
        c = await company(store)
        new = make_job(c, max_attempts=2, input={"n": 1}, key="k1", source_task_id="t1")
        before = await store.last_event_id()
        started = await store.insert_running(new, at(1), lease_owner="w1", lease_expires_at=at(31))
        assert started is not None
        inserted, taken = started
        assert inserted.created and inserted.event is not None
        queued = inserted.job
        assert queued.status == JobStatus.QUEUED and queued.attempt == 0
        assert queued.created_at == queued.updated_at == at(1) and queued.input == {"n": 1}
        assert queued.lease_owner is None and queued.started_at is None
        assert taken.id == queued.id == new.id
        assert taken.status == JobStatus.RUNNING and taken.attempt == 1
        assert taken.started_at == taken.updated_at == at(1) and taken.finished_at is None
        assert taken.lease_owner == "w1" and taken.lease_expires_at == at(31)
        assert taken.idempotency_key == "k1" and taken.source_task_id == "t1"
        assert await store.get_job(new.id) == taken
        events = await store.events_after(before)
        assert [e.type for e in events] == [EventType.QUEUED, EventType.RUNNING]
        assert events[0] == inserted.event and events[1].id == events[0].id + 1
        assert [e.created_at for e in events] == [at(1), at(1)]
        assert events[0].job.to_dict() == queued.to_dict()
        assert events[1].job.to_dict() == taken.to_dict()
        assert await store.latest_event(new.id) == events[1]
        # It runs on like any claimed job.
        done = await store.complete(new.id, "w1", at(2))
        assert done is not None and done.job.status == JobStatus.DONE

    @pytest.mark.parametrize(
        ("waiting", "starts"),
        [
            ({"priority": 0}, False),  # the same priority: it came first
            ({"priority": 1}, False),
            ({"priority": -1}, True),  # it would run after this one anyway
            ({"priority": 5, "run_at": at(60)}, True),  # not due yet
            ({"priority": 5, "job_type": "other"}, True),  # another type's queue
        ],
    )
    async def test_insert_running_never_overtakes_a_queued_job(
        self, store: JobStore, waiting: dict, starts: bool
    ) -> None:
        starts_on_insert(store)
        c = await company(store)
        queued = await submit(store, c, **waiting)
        before = await store.last_event_id()
        new = make_job(c)
        started = await store.insert_running(new, at(1), lease_owner="w1", lease_expires_at=at(31))
        assert (started is not None) == starts
        if not starts:
            assert await store.get_job(new.id) is None
            assert await store.last_event_id() == before
        assert (await store.get_job(queued.id)) == queued

    async def test_insert_running_leaves_what_it_cannot_start(self, store: JobStore) -> None:
        starts_on_insert(store)
        c = await company(store)
        existing = await submit(store, c, key="same")
        before = await store.last_event_id()
        for new in (make_job(c, key="same"), make_job(c, run_at=at(5))):
            started = await store.insert_running(
                new, at(1), lease_owner="w1", lease_expires_at=at(31)
            )
            assert started is None
            assert await store.get_job(new.id) is None
        assert await store.last_event_id() == before
        assert await store.get_job(existing.id) == existing

    async def test_insert_running_refusals_write_nothing(self, store: JobStore) -> None:
        starts_on_insert(store)
        c = await company(store)
        before = await store.last_event_id()
        with pytest.raises(CompanyNotFound):
            await store.insert_running(
                make_job("no-such-company"), at(1), lease_owner="w1", lease_expires_at=at(31)
            )
        done = await running(store, c)
        await store.complete(done.id, "w1", at(1))
        before = await store.last_event_id()
        with pytest.raises(InvalidRequest):
            await store.insert_running(
                replace(make_job(c), id=done.id), at(2), lease_owner="w1", lease_expires_at=at(31)
            )
        assert await store.last_event_id() == before

    async def test_claim_skips_jobs_not_due(self, store: JobStore) -> None:
        c = await company(store)
        future = await submit(store, c, run_at=at(10))
        assert await claim(store, now=at(9)) == []
        [job] = await claim(store, now=at(10))  # due exactly now counts
        assert job.id == future.id

    async def test_claim_type_caps_and_limit(self, store: JobStore) -> None:
        c = await company(store)
        for job_type in ["a", "a", "a", "b", "b", "c", "d"]:
            await submit(store, c, job_type=job_type)
        taken = await claim(store, caps={"a": 1, "b": None, "c": 0})
        assert sorted(j.job_type for j in taken) == ["a", "b", "b"]
        assert await claim(store, caps={"a": None, "d": None}, limit=0) == []
        taken = await claim(store, caps={"a": None, "d": None}, limit=2)
        assert len(taken) == 2
        assert await claim(store, caps={}) == []
        counts = await store.count_by_status(c)
        assert counts[JobStatus.QUEUED] == 2 and counts[JobStatus.RUNNING] == 5

    async def test_concurrent_claims_never_share_a_job(self, store: JobStore) -> None:
        c = await company(store)
        await store.insert_jobs([make_job(c) for _ in range(40)], T0)
        results: list[list[Job]] = []

        async def one(owner: str) -> None:
            results.append(await claim(store, owner=owner, limit=3))

        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(one, f"w{i}")
        ids = [j.id for taken in results for j in taken]
        assert len(ids) == len(set(ids)) == 40
        for taken in results:
            for job in taken:
                stored = await store.get_job(job.id)
                assert stored is not None and stored.lease_owner == job.lease_owner

    # --- fair share between companies -----------------------------------------------

    async def test_claim_serves_the_company_with_fewest_running_first(
        self, store: JobStore
    ) -> None:
        a = await company(store, "a")
        b = await company(store, "b")
        await running(store, a)
        backlog = [await submit(store, a, now=at(0)) for _ in range(3)]
        late = await submit(store, b, now=at(1))  # after A's whole backlog
        [first] = await claim(store, now=at(2), limit=1)
        assert first.id == late.id  # B has none running: it goes first
        # Both have one running now: oldest first again.
        [second] = await claim(store, now=at(2), limit=1)
        assert second.id == backlog[0].id

    async def test_claim_batch_interleaves_companies(self, store: JobStore) -> None:
        a = await company(store, "a")
        b = await company(store, "b")
        a_jobs = [await submit(store, a, now=at(0)) for _ in range(5)]
        b_jobs = [await submit(store, b, now=at(1)) for _ in range(2)]
        taken = await claim(store, now=at(2), limit=6)
        assert [j.id for j in taken] == [
            a_jobs[0].id,
            b_jobs[0].id,
            a_jobs[1].id,
            b_jobs[1].id,
            a_jobs[2].id,
            a_jobs[3].id,
        ]
        # The events come in the same order.
        events = await store.events_after(0)
        running_ids = [e.job_id for e in events if e.type == EventType.RUNNING]
        assert running_ids == [j.id for j in taken]

    async def test_claim_priority_wins_over_fairness(self, store: JobStore) -> None:
        a = await company(store, "a")
        b = await company(store, "b")
        for _ in range(3):
            await running(store, a)
        calm = await submit(store, b, now=at(0))
        urgent = await submit(store, a, now=at(1), priority=5)
        taken = await claim(store, now=at(2), limit=2)
        assert [j.id for j in taken] == [urgent.id, calm.id]

    async def test_claim_fair_order_keeps_type_caps(self, store: JobStore) -> None:
        a = await company(store, "a")
        b = await company(store, "b")
        a_jobs = [await submit(store, a, now=at(0), job_type="x") for _ in range(3)]
        b_x = await submit(store, b, now=at(1), job_type="x")
        b_y = await submit(store, b, now=at(1), job_type="y")
        taken = await claim(store, now=at(2), caps={"x": 2, "y": None})
        # x: A's first, then B's (load 0 both), A's second is past the type's cap.
        assert {j.id for j in taken} == {a_jobs[0].id, b_x.id, b_y.id}

    async def test_company_max_running(self, store: JobStore) -> None:
        a = await company(store, "a")
        assert (await store.get_company(a)).max_running is None
        capped = await store.set_company_max_running(a, 2)
        assert capped.max_running == 2 and capped.id == a and capped.name == "a"
        assert (await store.get_company(a)).max_running == 2
        assert (await store.get_company_by_name("a")).max_running == 2
        assert [c.max_running for c in await store.list_companies()] == [2]
        assert (await store.set_company_max_running(a, None)).max_running is None
        assert (await store.get_company(a)).max_running is None
        with pytest.raises(CompanyNotFound):
            await store.set_company_max_running("no-such-company", 3)
        for bad in (0, -1):
            with pytest.raises(InvalidRequest):
                await store.set_company_max_running(a, bad)
        assert (await store.get_company(a)).max_running is None

    async def test_claim_respects_the_company_cap(self, store: JobStore) -> None:
        a = await company(store, "a")
        b = await company(store, "b")
        first = await running(store, a)
        await store.set_company_max_running(a, 3)
        await store.insert_jobs([make_job(a) for _ in range(6)], at(0))
        b_jobs = await store.insert_jobs([make_job(b) for _ in range(2)], at(1))
        taken = await claim(store, now=at(2), limit=10)
        assert sorted(j.company_id for j in taken) == sorted([a, a, b, b])
        assert {j.id for j in taken} >= {i.job.id for i in b_jobs}
        assert await claim(store, now=at(2)) == []  # A is at its cap
        await store.complete(first.id, "w1", at(3))
        [more] = await claim(store, now=at(3))
        assert more.company_id == a
        # A cap lowered below the running count takes nothing until enough end.
        await store.set_company_max_running(a, 1)
        assert await claim(store, now=at(4)) == []
        await store.set_company_max_running(a, None)
        assert len(await claim(store, now=at(4))) == 3
        counts = await store.count_by_status(a)
        assert counts[JobStatus.QUEUED] == 0 and counts[JobStatus.RUNNING] == 6

    async def test_concurrent_claims_keep_the_company_cap(self, store: JobStore) -> None:
        a = await company(store, "a")
        await store.set_company_max_running(a, 5)
        await store.insert_jobs([make_job(a) for _ in range(40)], T0)

        async def one(owner: str) -> None:
            await claim(store, owner=owner, limit=3)

        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(one, f"w{i}")
        counts = await store.count_by_status(a)
        assert counts[JobStatus.RUNNING] == 5 and counts[JobStatus.QUEUED] == 35

    async def test_insert_running_leaves_a_capped_company_to_the_claim(
        self, store: JobStore
    ) -> None:
        starts_on_insert(store)
        a = await company(store, "a")
        await store.set_company_max_running(a, 10)
        new = make_job(a)
        before = await store.last_event_id()
        started = await store.insert_running(new, at(1), lease_owner="w1", lease_expires_at=at(31))
        assert started is None
        assert await store.get_job(new.id) is None
        assert await store.last_event_id() == before

    async def test_count_by_company(self, store: JobStore) -> None:
        a = await company(store, "a")
        b = await company(store, "b")
        await company(store, "idle")
        assert await store.count_by_company() == {}
        done = await running(store, a)
        await store.complete(done.id, "w1", at(1))
        await running(store, a)
        await store.insert_jobs([make_job(a), make_job(b), make_job(b)], at(1))
        assert await store.count_by_company() == {a: (1, 1), b: (0, 2)}

    # --- leases ----------------------------------------------------------------------

    async def test_renew_leases(self, store: JobStore) -> None:
        c = await company(store)
        a1 = await running(store, c, owner="A")
        a2 = await running(store, c, owner="A")
        b1 = await running(store, c, owner="B")
        done = await running(store, c, owner="A")
        await store.complete(done.id, "A", at(1))
        await store.cancel(a2.id, at(1))
        before = await store.last_event_id()
        renewal = await store.renew_leases([a1.id, a2.id, b1.id, done.id, new_id()], "A", at(90))
        assert renewal.held == {a1.id, a2.id}
        assert renewal.cancel_requested == {a2.id}
        for job in (a1, a2):
            stored = await store.get_job(job.id)
            assert stored is not None and stored.lease_expires_at == at(90)
        assert await store.get_job(b1.id) == b1
        assert await store.last_event_id() == before
        empty = await store.renew_leases([], "A", at(90))
        assert empty.held == frozenset() and empty.cancel_requested == frozenset()

    async def test_progress(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        before = await store.last_event_id()
        event = await store.record_progress(job.id, "w1", 40, "laying out", at(2))
        after = await expect_one_event(store, before, event, EventType.PROGRESS, at(2))
        assert after.progress == Progress(40, "laying out") and after.updated_at == at(2)
        assert after.status == JobStatus.RUNNING

    async def test_a_handlers_text_is_stored_whatever_it_holds(self, store: JobStore) -> None:
        """NUL (PostgreSQL text cannot hold it) and lone surrogates (no store can) in a
        handler's messages become U+FFFD, the same on every store: the outcome is kept."""
        c = await company(store)
        job = await running(store, c)
        event = await store.record_progress(job.id, "w1", 10, "a\x00b\ud800c", at(2))
        assert event is not None and event.job.progress.message == "a\ufffdb\ufffdc"
        failed = await store.fail(job.id, "w1", at(3), "boom\x00\udfff!")
        assert failed is not None and failed.job.error_message == "boom\ufffd\ufffd!"
        assert (await store.get_job(job.id)).error_message == "boom\ufffd\ufffd!"

    async def test_complete(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c, max_attempts=2)
        await store.record_progress(job.id, "w1", 40, "almost", at(1))
        await store.fail(job.id, "w1", at(2), "first try", retry_at=at(2))
        [job] = await claim(store, now=at(3))
        before = await store.last_event_id()
        event = await store.complete(job.id, "w1", at(4), result_asset_id="asset-1")
        done = await expect_one_event(store, before, event, EventType.DONE, at(4))
        assert done.status == JobStatus.DONE
        assert done.progress.percent == 100
        assert done.finished_at == at(4) and done.updated_at == at(4)
        assert done.lease_owner is None and done.lease_expires_at is None
        assert done.error_message is None and done.result_asset_id == "asset-1"
        assert done.attempt == 2

    async def test_complete_keeps_progress_message_and_no_asset(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        await store.record_progress(job.id, "w1", 40, "rendering", at(1))
        await store.complete(job.id, "w1", at(2))
        done = await store.get_job(job.id)
        assert done is not None
        assert done.progress == Progress(100, "rendering") and done.result_asset_id is None

    async def test_fail_with_retry(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c, max_attempts=3)
        before = await store.last_event_id()
        event = await store.fail(job.id, "w1", at(2), "boom", retry_at=at(20))
        after = await expect_one_event(store, before, event, EventType.RETRYING, at(2))
        assert after.status == JobStatus.QUEUED and after.run_at == at(20)
        assert after.error_message == "boom" and after.finished_at is None
        assert after.lease_owner is None and after.lease_expires_at is None
        assert after.attempt == 1 and after.updated_at == at(2)
        assert await claim(store, now=at(19)) == []

    async def test_fail_with_retry_after_a_cancel_request_ends_cancelled(
        self, store: JobStore
    ) -> None:
        c = await company(store)
        job = await running(store, c, max_attempts=3)
        await store.cancel(job.id, at(1))
        before = await store.last_event_id()
        event = await store.fail(job.id, "w1", at(2), "boom", retry_at=at(20))
        after = await expect_one_event(store, before, event, EventType.CANCELLED, at(2))
        assert after.status == JobStatus.CANCELLED and after.finished_at == at(2)
        assert after.error_message == "cancelled" and after.lease_owner is None
        assert await claim(store, now=at(30)) == []

    async def test_fail_after_a_cancel_request_ends_cancelled(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        await store.cancel(job.id, at(1))
        event = await store.fail(job.id, "w1", at(2), "boom")
        assert event is not None and event.type == EventType.CANCELLED
        assert event.job.status == JobStatus.CANCELLED

    async def test_fail_without_retry(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        before = await store.last_event_id()
        event = await store.fail(job.id, "w1", at(2), "boom")
        after = await expect_one_event(store, before, event, EventType.FAILED, at(2))
        assert after.status == JobStatus.FAILED and after.finished_at == at(2)
        assert after.error_message == "boom"
        assert after.lease_owner is None and after.lease_expires_at is None

    async def test_mark_cancelled(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        await store.cancel(job.id, at(1))
        before = await store.last_event_id()
        event = await store.mark_cancelled(job.id, "w1", at(2))
        after = await expect_one_event(store, before, event, EventType.CANCELLED, at(2))
        assert after.status == JobStatus.CANCELLED and after.finished_at == at(2)
        assert after.error_message == "cancelled"
        assert after.lease_owner is None and after.lease_expires_at is None

    @pytest.mark.parametrize("method", ["progress", "complete", "fail", "retrying", "cancelled"])
    async def test_lost_lease_changes_nothing(self, store: JobStore, method: str) -> None:
        c = await company(store)
        job = await running(store, c, owner="w1", max_attempts=3)
        queued = await submit(store, c, job_type="later")
        await store.complete((await running(store, c, owner="w1")).id, "w1", at(1))
        finished = (await store.list_jobs(c, status=JobStatus.DONE)).items[0]

        async def call(job_id: str, owner: str) -> JobEvent | None:
            if method == "progress":
                return await store.record_progress(job_id, owner, 50, "x", at(5))
            if method == "complete":
                return await store.complete(job_id, owner, at(5), result_asset_id="a")
            if method == "fail":
                return await store.fail(job_id, owner, at(5), "boom")
            if method == "retrying":
                return await store.fail(job_id, owner, at(5), "boom", retry_at=at(9))
            return await store.mark_cancelled(job_id, owner, at(5))

        before = await store.last_event_id()
        assert await call(job.id, "w2") is None  # another owner
        assert await call(queued.id, "w1") is None  # not running
        assert await call(finished.id, "w1") is None  # already ended
        assert await call(new_id(), "w1") is None  # unknown
        for unchanged in (job, queued, finished):
            await expect_unchanged(store, unchanged, before)
        # After the reaper takes the job, its old owner can no longer touch it.
        await store.reap_expired(now=at(40), expired_before=at(40), retry_at=at(41))
        reaped = await store.get_job(job.id)
        assert reaped is not None
        before = await store.last_event_id()
        assert await call(job.id, "w1") is None
        await expect_unchanged(store, reaped, before)

    # --- operator actions ------------------------------------------------------------

    async def test_cancel_queued(self, store: JobStore) -> None:
        c = await company(store)
        job = await submit(store, c)
        before = await store.last_event_id()
        outcome = await store.cancel(job.id, at(3))
        after = await expect_one_event(store, before, outcome.event, EventType.CANCELLED, at(3))
        assert outcome.job == after
        assert after.status == JobStatus.CANCELLED and after.finished_at == at(3)
        assert after.error_message == "cancelled" and after.updated_at == at(3)

    async def test_cancel_running_only_requests(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        before = await store.last_event_id()
        for _ in range(2):  # idempotent
            outcome = await store.cancel(job.id, at(3))
            assert outcome.event is None
            assert outcome.job.status == JobStatus.RUNNING and outcome.job.cancel_requested
            assert await store.get_job(job.id) == outcome.job
        assert await store.last_event_id() == before

    async def test_cancel_terminal_or_unknown(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        await store.complete(job.id, "w1", at(1))
        done = await store.get_job(job.id)
        before = await store.last_event_id()
        with pytest.raises(InvalidTransition) as info:
            await store.cancel(job.id, at(2))
        assert (info.value.job_id, info.value.status) == (job.id, "done")
        await expect_unchanged(store, done, before)  # type: ignore[arg-type]
        missing = new_id()
        with pytest.raises(JobNotFound) as not_found:
            await store.cancel(missing, at(2))
        assert not_found.value.job_id == missing

    async def test_retry_failed_bumps_max_attempts(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        await store.cancel(job.id, at(1))  # a stale request must not survive the retry
        ended = await store.fail(job.id, "w1", at(2), "boom")
        assert ended is not None and ended.job.status == JobStatus.CANCELLED
        before = await store.last_event_id()
        event = await store.retry(job.id, at(5))
        after = await expect_one_event(store, before, event, EventType.QUEUED, at(5))
        assert after.status == JobStatus.QUEUED and after.run_at == at(5)
        assert after.finished_at is None and after.error_message == "cancelled"
        assert not after.cancel_requested
        assert after.attempt == 1 and after.max_attempts == 2
        [again] = await claim(store, now=at(5))
        assert again.attempt == 2

    async def test_retry_keeps_a_higher_max_attempts(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c, max_attempts=5)
        await store.fail(job.id, "w1", at(2), "boom")
        await store.retry(job.id, at(3))
        after = await store.get_job(job.id)
        assert after is not None and after.max_attempts == 5

    async def test_retry_cancelled(self, store: JobStore) -> None:
        c = await company(store)
        job = await submit(store, c)
        await store.cancel(job.id, at(1))
        event = await store.retry(job.id, at(2))
        assert event.job.status == JobStatus.QUEUED
        assert event.job.max_attempts == 1 and event.job.attempt == 0
        assert event.job.finished_at is None and event.job.run_at == at(2)

    async def test_retry_from_other_states(self, store: JobStore) -> None:
        c = await company(store)
        queued = await submit(store, c, job_type="later")
        job = await running(store, c)
        for target in (queued, job):
            before = await store.last_event_id()
            with pytest.raises(InvalidTransition) as info:
                await store.retry(target.id, at(1))
            assert info.value.status == str(target.status)
            await expect_unchanged(store, target, before)
        await store.complete(job.id, "w1", at(2))
        with pytest.raises(InvalidTransition):
            await store.retry(job.id, at(3))
        with pytest.raises(JobNotFound):
            await store.retry(new_id(), at(3))

    # --- reaper ----------------------------------------------------------------------

    async def test_reap_expired_branches(self, store: JobStore) -> None:
        c = await company(store)
        retryable = await running(store, c, owner="dead", max_attempts=2)
        exhausted = await running(store, c, owner="dead", max_attempts=1)
        cancelling = await running(store, c, owner="dead", max_attempts=2)
        await store.cancel(cancelling.id, at(1))
        alive = await submit(store, c, job_type="x")
        await store.claim(
            now=T0, limit=1, type_caps={"x": None}, lease_owner="alive", lease_expires_at=at(100)
        )
        before = await store.last_event_id()
        events = await store.reap_expired(now=at(50), expired_before=at(30), retry_at=at(60))
        assert {e.job_id: e.type for e in events} == {
            retryable.id: EventType.RETRYING,
            exhausted.id: EventType.FAILED,
            cancelling.id: EventType.CANCELLED,
        }
        assert await store.events_after(before) == events
        assert [e.id for e in events] == sorted(e.id for e in events)
        for event in events:
            job = await store.get_job(event.job_id)
            assert job is not None and event.job.to_dict() == job.to_dict()
            assert event.created_at == at(50) and job.updated_at == at(50)
            assert job.lease_owner is None and job.lease_expires_at is None
        requeued = await store.get_job(retryable.id)
        assert requeued is not None
        assert requeued.status == JobStatus.QUEUED and requeued.run_at == at(60)
        assert requeued.error_message == WORKER_LOST and requeued.finished_at is None
        failed = await store.get_job(exhausted.id)
        assert failed is not None and failed.status == JobStatus.FAILED
        assert failed.error_message == WORKER_LOST and failed.finished_at == at(50)
        cancelled = await store.get_job(cancelling.id)
        assert cancelled is not None and cancelled.status == JobStatus.CANCELLED
        assert cancelled.finished_at == at(50)
        still = await store.get_job(alive.id)
        assert still is not None and still.status == JobStatus.RUNNING
        assert await store.reap_expired(now=at(51), expired_before=at(30), retry_at=at(60)) == []

    async def test_reap_exclude_owner_limit_and_order(self, store: JobStore) -> None:
        c = await company(store)
        jobs = []
        for i, owner in enumerate(["a", "b", "a", "b", "a"]):
            job = await submit(store, c, max_attempts=2)
            await claim(store, owner=owner, lease=at(10 - i))  # later jobs expire first
            jobs.append(job)
        mine = await store.reap_expired(
            now=at(20), expired_before=at(10), retry_at=at(20), exclude_owner="a", limit=1
        )
        assert [e.job_id for e in mine] == [jobs[3].id]
        rest = await store.reap_expired(now=at(20), expired_before=at(9), retry_at=at(20))
        assert [e.job_id for e in rest] == [jobs[4].id, jobs[2].id, jobs[1].id]
        assert (await store.get_job(jobs[0].id)).status == JobStatus.RUNNING  # type: ignore[union-attr]

    async def test_reap_boundary_and_limit(self, store: JobStore) -> None:
        c = await company(store)
        jobs = []
        for i in range(4):
            job = await submit(store, c, max_attempts=2)
            await claim(store, owner="dead", lease=at(10 + i))
            jobs.append(job)
        first = await store.reap_expired(
            now=at(20), expired_before=at(12), retry_at=at(20), limit=2
        )
        assert [e.job_id for e in first] == [jobs[0].id, jobs[1].id]
        second = await store.reap_expired(now=at(20), expired_before=at(12), retry_at=at(20))
        assert [e.job_id for e in second] == [jobs[2].id]  # lease at exactly 12 is expired
        still = await store.get_job(jobs[3].id)
        assert still is not None and still.status == JobStatus.RUNNING

    # --- events ----------------------------------------------------------------------

    async def test_events_after(self, store: JobStore) -> None:
        assert await store.last_event_id() == 0
        assert await store.events_after(0) == []
        c = await company(store)
        other = await company(store, "other")
        a = await submit(store, c)
        b = await submit(store, other, now=at(1))
        [job_a] = await claim(store, now=at(1), limit=1)
        assert job_a.id == a.id
        await store.record_progress(a.id, "w1", 10, None, at(1))
        await store.complete(a.id, "w1", at(2))
        events = await store.events_after(0)
        assert [(e.job_id, e.type) for e in events] == [
            (a.id, EventType.QUEUED),
            (b.id, EventType.QUEUED),
            (a.id, EventType.RUNNING),
            (a.id, EventType.PROGRESS),
            (a.id, EventType.DONE),
        ]
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] > 0
        assert await store.last_event_id() == ids[-1]
        assert await store.events_after(ids[1]) == events[2:]
        assert await store.events_after(0, limit=2) == events[:2]
        assert await store.events_after(0, company_id=other) == [events[1]]
        assert await store.events_after(ids[2], job_id=a.id) == events[3:]
        assert await store.events_after(0, company_id=other, job_id=a.id) == []
        assert await store.events_after(ids[-1]) == []
        assert await store.latest_event(a.id) == events[-1]
        assert await store.latest_event(b.id) == events[1]
        assert await store.latest_event(new_id()) is None

    async def test_event_ids_increase_across_every_kind_of_write(self, store: JobStore) -> None:
        c = await company(store)
        seen: list[int] = []
        for ins in await store.insert_jobs([make_job(c, max_attempts=3) for _ in range(3)], T0):
            assert ins.event is not None
            seen.append(ins.event.id)
        taken = await store.claim(
            now=T0, limit=3, type_caps={"noop": None}, lease_owner="w1", lease_expires_at=at(5)
        )
        seen += [event.id for _, event in taken]
        first, second, third = (job for job, _ in taken)
        for event in [
            await store.record_progress(first.id, "w1", 1, None, at(1)),
            await store.fail(first.id, "w1", at(1), "x", retry_at=at(1)),
            await store.fail(second.id, "w1", at(1), "x"),
            await store.retry(second.id, at(2)),
        ]:
            assert event is not None
            seen.append(event.id)
        seen += [
            e.id for e in await store.reap_expired(now=at(9), expired_before=at(9), retry_at=at(9))
        ]
        assert third.id in {e.job_id for e in await store.events_after(seen[-2])}
        assert seen == sorted(seen) and len(set(seen)) == len(seen)
        assert await store.last_event_id() == seen[-1]

    # --- retention -------------------------------------------------------------------

    async def test_prune_keeps_every_jobs_latest_event(self, store: JobStore) -> None:
        assert await store.pruned_through() == 0
        c = await company(store)
        old = await running(store, c)  # queued + running at T0
        await store.complete(old.id, "w1", at(1))
        idle = await submit(store, c)  # only its queued event, at T0
        fresh = await submit(store, c, now=at(100))
        events = await store.events_after(0)
        assert await store.prune_events(at(50)) == 2  # old's queued and running
        left = await store.events_after(0)
        assert [(e.job_id, e.type) for e in left] == [
            (old.id, EventType.DONE),
            (idle.id, EventType.QUEUED),
            (fresh.id, EventType.QUEUED),
        ]
        assert await store.pruned_through() == events[1].id
        assert await store.prune_events(at(50)) == 0
        assert await store.pruned_through() == events[1].id
        assert await store.latest_event(old.id) == left[0]

    async def test_prune_honours_its_limit(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        for i in range(5):
            await store.record_progress(job.id, "w1", i, None, at(1))
        assert await store.prune_events(at(10), limit=2) == 2
        assert await store.prune_events(at(10), limit=100) == 4
        assert len(await store.events_after(0)) == 1

    async def test_prune_jobs_deletes_finished_jobs_with_their_events(
        self, store: JobStore
    ) -> None:
        c = await company(store)
        done = await running(store, c)
        await store.complete(done.id, "w1", at(10))
        failed = await running(store, c)
        await store.fail(failed.id, "w1", at(20), "boom")
        cancelled = await submit(store, c)
        await store.cancel(cancelled.id, at(30))
        recent = await running(store, c)
        await store.complete(recent.id, "w1", at(500))
        still = await running(store, c)  # old, but running
        queued = await submit(store, c)  # old, but not finished
        last_of_pruned = max(
            e.id
            for e in await store.events_after(0)
            if e.job_id in {done.id, failed.id, cancelled.id}
        )
        assert await store.count_prunable_jobs(at(100)) == 3
        assert await store.prune_jobs(at(100)) == 3
        for gone in (done, failed, cancelled):
            assert await store.get_job(gone.id) is None
            assert await store.latest_event(gone.id) is None
        for kept in (recent, queued, still):
            assert await store.get_job(kept.id) is not None
        left = {e.job_id for e in await store.events_after(0)}
        assert left == {recent.id, queued.id, still.id}
        assert await store.pruned_through() >= last_of_pruned
        assert await store.count_prunable_jobs(at(100)) == 0
        assert await store.prune_jobs(at(100)) == 0  # idempotent
        assert (await store.count_by_status(c))[JobStatus.DONE] == 1

    async def test_prune_jobs_oldest_first_within_its_limit(self, store: JobStore) -> None:
        c = await company(store)
        finished = []
        for i in range(5):
            job = await running(store, c)
            await store.complete(job.id, "w1", at(50 - i))  # the last made finished first
            finished.append(job)
        assert await store.prune_jobs(at(100), limit=2) == 2
        assert [await store.get_job(j.id) is None for j in finished] == [
            False,
            False,
            False,
            True,
            True,
        ]
        assert await store.prune_jobs(at(100), limit=100) == 3
        assert await store.list_jobs(c) == await store.list_jobs(new_id())

    async def test_pruned_jobs_leave_their_assets_unlinked(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        asset = make_asset(c, job_id=job.id)
        await store.complete(job.id, "w1", at(1), result_asset_id=asset.id, assets=[asset])
        assert await store.prune_jobs(at(2)) == 1
        kept = await store.get_asset(asset.id)
        assert kept is not None and kept.created_by_job_id is None
        assert await store.existing_asset_keys([asset.object_key]) == {asset.object_key}

    # --- node presence ---------------------------------------------------------------

    async def test_nodes_announce_refresh_and_forget(self, store: JobStore) -> None:
        hour_ago = at(-3600)
        # Same start: the id decides, byte by byte ("N" before "n"), on every store.
        a = NodeInfo("node-1", "host-a", 11, T0, "file:///srv/callboard/assets", ("noop", "t"))
        b = NodeInfo("Node-2", "host-b", 22, T0, "s3://bucket/assets")
        c = NodeInfo("node-0", "host-c", 33, at(1), "s3://other")
        assert await store.live_nodes(hour_ago) == []
        await store.announce_node(a, at(2), hour_ago)
        await store.announce_node(b, at(3), hour_ago)
        await store.announce_node(c, at(4), hour_ago)
        a2 = replace(a, last_seen=at(2))
        b3 = replace(b, last_seen=at(3))
        c4 = replace(c, last_seen=at(4))
        assert await store.live_nodes(T0) == [b3, a2, c4]
        assert await store.live_nodes(at(3)) == [b3, c4]  # seen at `since` is live
        assert await store.live_nodes(at(5)) == []

        # A refresh moves last_seen and takes the details given (its last_seen is not).
        moved = replace(a, job_types=(), storage_url="s3://bucket/assets", last_seen=at(1))
        await store.announce_node(moved, at(10), hour_ago)
        assert await store.live_nodes(at(5)) == [replace(moved, last_seen=at(10))]

        await store.forget_node(a.id)
        await store.forget_node("never-seen")
        assert await store.live_nodes(T0) == [b3, c4]

    async def test_announcing_deletes_the_rows_of_long_gone_nodes(self, store: JobStore) -> None:
        gone = NodeInfo("gone", "host-a", 1, T0, "s3://bucket")
        me = NodeInfo("me", "host-b", 2, T0, "s3://bucket")
        await store.announce_node(gone, T0, at(-3600))
        await store.announce_node(me, at(1), at(-3600))
        # `gone` was seen at T0, not before it: kept.
        await store.announce_node(me, at(2), T0)
        assert [n.id for n in await store.live_nodes(at(-7200))] == ["gone", "me"]
        await store.announce_node(me, at(3), at(1))
        assert [n.id for n in await store.live_nodes(at(-7200))] == ["me"]
        # A node announcing after a long absence keeps its own row, refreshed.
        await store.announce_node(me, at(9000), at(5400))
        assert await store.live_nodes(at(-7200)) == [replace(me, last_seen=at(9000))]

    # --- API tokens ------------------------------------------------------------------

    async def test_tokens_round_trip_and_revoke(self, store: JobStore) -> None:
        from callboard.errors import TokenNotFound
        from callboard.store.base import ApiToken

        c = await company(store)
        other = await company(store, "globex")
        op = ApiToken(new_id(), None, "operator", "p-op", "h-op", T0)
        mine = ApiToken(new_id(), c, "ci", "p-1", "h-1", at(1))
        theirs = ApiToken(new_id(), other, "ci", "p-2", "h-2", at(2))
        for token in (op, mine, theirs):
            assert await store.create_token(token) == token
        assert await store.find_tokens("p-1") == [mine]
        assert await store.find_tokens("nope") == []
        assert await store.list_tokens(c) == [mine]
        assert await store.list_tokens(None) == [op]
        with pytest.raises(TokenNotFound):
            await store.revoke_token(theirs.id, c, at(3))  # not this company's
        with pytest.raises(TokenNotFound):
            await store.revoke_token(op.id, c, at(3))
        revoked = await store.revoke_token(mine.id, c, at(3))
        assert revoked.revoked_at == at(3)
        again = await store.revoke_token(mine.id, c, at(9))
        assert again.revoked_at == at(3)
        assert (await store.find_tokens("p-1"))[0].revoked_at == at(3)
        assert (await store.revoke_token(op.id, None, at(4))).revoked_at == at(4)
        with pytest.raises(CompanyNotFound):
            await store.create_token(ApiToken(new_id(), new_id(), "x", "p-3", "h-3", T0))
        assert await store.find_tokens("p-3") == []

    async def test_count_by_type_and_status(self, store: JobStore) -> None:
        assert await store.count_by_type_and_status() == {}
        a = await company(store)
        b = await company(store, "globex")
        await running(store, a, job_type="render")
        await submit(store, a, job_type="render")
        await submit(store, b)
        assert await store.count_by_type_and_status() == {
            ("render", JobStatus.RUNNING): 1,
            ("render", JobStatus.QUEUED): 1,
            ("noop", JobStatus.QUEUED): 1,
        }

    # --- assets ----------------------------------------------------------------------

    async def test_insert_and_get_asset(self, store: JobStore) -> None:
        c = await company(store)
        asset = make_asset(c, source_task_id="task-7", name="résumé (1).pdf")
        assert await store.insert_asset(asset) == asset
        assert await store.get_asset(asset.id) == asset
        assert await store.get_asset(new_id()) is None
        assert asset.to_dict()["originalFilename"] == "résumé (1).pdf"

    async def test_insert_asset_refusals_write_nothing(self, store: JobStore) -> None:
        c = await company(store)
        first = await store.insert_asset(make_asset(c))
        with pytest.raises(CompanyNotFound):
            await store.insert_asset(make_asset(new_id()))
        with pytest.raises(JobNotFound):
            await store.insert_asset(make_asset(c, job_id=new_id()))
        same_key = make_asset(c, key=first.object_key)
        with pytest.raises(InvalidRequest, match="already exists"):
            await store.insert_asset(same_key)
        same_id = replace(make_asset(c), id=first.id)
        with pytest.raises(InvalidRequest, match="already exists"):
            await store.insert_asset(same_id)
        page = await store.list_assets(c)
        assert page.items == [first] and page.next_cursor is None

    async def test_list_assets_newest_first_with_filters_and_pages(self, store: JobStore) -> None:
        a = await company(store)
        b = await company(store, "globex")
        job = await submit(store, a)
        made = [
            await store.insert_asset(
                make_asset(a, source_task_id="t1" if i % 2 else "t2", created_at=at(i // 2))
            )
            for i in range(5)
        ]
        by_job = await store.insert_asset(make_asset(a, job_id=job.id, created_at=at(9)))
        await store.insert_asset(make_asset(b, source_task_id="t1"))
        newest_first = sorted([*made, by_job], key=lambda x: (x.created_at, x.id), reverse=True)
        seen, cursor = [], None
        while True:
            page = await store.list_assets(a, limit=2, cursor=cursor)
            seen.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == newest_first
        t1 = (await store.list_assets(a, source_task_id="t1")).items
        assert t1 == [x for x in newest_first if x.source_task_id == "t1"] and len(t1) == 2
        assert (await store.list_assets(a, created_by_job_id=job.id)).items == [by_job]
        assert (await store.list_assets(b)).items[0].company_id == b
        assert (await store.list_assets(new_id())).items == []
        with pytest.raises(InvalidRequest):
            await store.list_assets(a, cursor="nonsense")
        with pytest.raises(InvalidRequest):
            await store.list_assets(a, limit=0)

    async def test_list_all_assets_pages_every_company_by_id(self, store: JobStore) -> None:
        assert await store.list_all_assets(None, 10) == []
        a = await company(store)
        b = await company(store, "globex")
        job = await submit(store, a)
        # Newer rows get older created_at: the order must be the id's, not the time's.
        made = [
            await store.insert_asset(make_asset(a if i % 2 else b, created_at=at(-i)))
            for i in range(7)
        ]
        made.append(await store.insert_asset(make_asset(a, job_id=job.id, created_at=at(5))))
        by_id = sorted(made, key=lambda x: x.id)
        seen: list[Asset] = []
        after = None
        while page := await store.list_all_assets(after, 3):
            assert len(page) <= 3
            seen.extend(page)
            after = page[-1].id
        assert seen == by_id
        assert await store.list_all_assets(by_id[2].id, 2) == by_id[3:5]
        assert await store.list_all_assets(by_id[-1].id, 10) == []
        # A page may start after an id that is not (or no longer) a row's.
        assert await store.list_all_assets(by_id[3].id + "~", 1) == [by_id[4]]
        with pytest.raises(InvalidRequest):
            await store.list_all_assets(None, 0)

    async def test_existing_asset_keys(self, store: JobStore) -> None:
        c = await company(store)
        kept = await store.insert_asset(make_asset(c))
        missing = make_asset(c).object_key
        assert await store.existing_asset_keys([kept.object_key, missing]) == {kept.object_key}
        assert await store.existing_asset_keys([]) == set()

    async def test_complete_writes_its_assets_in_the_same_transaction(
        self, store: JobStore
    ) -> None:
        c = await company(store)
        job = await running(store, c, source_task_id="task-7")
        rows = [
            make_asset(c, job_id=job.id, source_task_id="task-7", created_at=at(1)),
            make_asset(c, job_id=job.id, source_task_id="task-7", created_at=at(2)),
        ]
        before = await store.last_event_id()
        event = await store.complete(job.id, "w1", at(3), rows[0].id, rows)
        done = await expect_one_event(store, before, event, EventType.DONE, at(3))
        assert done.result_asset_id == rows[0].id
        assert (await store.list_assets(c, source_task_id="task-7")).items == rows[::-1]
        assert await store.get_asset(rows[1].id) == rows[1]

    async def test_complete_with_a_bad_asset_writes_nothing(self, store: JobStore) -> None:
        c = await company(store)
        other = await company(store, "globex")
        job = await running(store, c)
        existing = await store.insert_asset(make_asset(c))
        for bad in (
            make_asset(other, job_id=job.id),  # another company's
            make_asset(c, job_id=new_id()),  # another job's
            make_asset(c, job_id=job.id, key=existing.object_key),  # a key taken
        ):
            good = make_asset(c, job_id=job.id)
            before = await store.last_event_id()
            with pytest.raises(InvalidRequest):
                await store.complete(job.id, "w1", at(1), good.id, [good, bad])
            await expect_unchanged(store, job, before)
            assert await store.get_asset(good.id) is None
        assert (await store.list_assets(c)).items == [existing]

    async def test_complete_with_a_lost_lease_writes_no_assets(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        row = make_asset(c, job_id=job.id)
        before = await store.last_event_id()
        assert await store.complete(job.id, "someone-else", at(1), row.id, [row]) is None
        await expect_unchanged(store, job, before)
        assert await store.get_asset(row.id) is None

    # --- job results -----------------------------------------------------------------

    RESULTS = (
        {"pages": 12, "url": "https://example.com/a.pdf"},
        {"nested": {"list": [1, 2.5, -0.0, True, None, {"deep": ["x"]}], "empty": {}}},
        {"z": 1, "a": 2, "m": 3},  # key order as written
        'résumé ✓ 漢字 🎉 \x00 \u2028 "quoted" \\',
        [],
        0,
        2**62,
        1e-300,
        False,
        {"big": "é" * 100_000},
    )

    async def test_complete_stores_the_result_as_returned(self, store: JobStore) -> None:
        """The result comes back equal, key order included, from the event, the job and
        the list, whatever text it holds (NUL, U+2028 and astral characters too)."""
        for index, value in enumerate(self.RESULTS):
            c = await company(store, f"acme-{index}")
            job = await running(store, c)
            before = await store.last_event_id()
            event = await store.complete(job.id, "w1", at(2), result=encode_result(value, 10**7))
            done = await expect_one_event(store, before, event, EventType.DONE, at(2))
            assert done.result == value and type(done.result) is type(value)
            if isinstance(value, dict):
                assert list(done.result) == list(value)
            [stored] = await store.events_after(before)
            assert stored.job.result == value and stored.job.to_dict()["result"] == value
            [listed] = (await store.list_jobs(c, limit=1)).items
            assert listed.id == job.id and listed.result == value

    async def test_a_job_without_a_result_has_none(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c, max_attempts=2)
        assert job.result is None
        progressed = await store.record_progress(job.id, "w1", 50, None, at(1))
        retrying = await store.fail(job.id, "w1", at(2), "boom", retry_at=at(2))
        assert progressed is not None and progressed.job.result is None
        assert retrying is not None and retrying.job.result is None
        [job] = await claim(store, now=at(3))
        event = await store.complete(job.id, "w1", at(4))
        assert event is not None and event.job.result is None
        assert event.job.to_dict()["result"] is None
        assert (await store.get_job(job.id)).result is None

    async def test_a_result_and_a_result_asset_are_kept_together(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        row = make_asset(c, job_id=job.id)
        text = encode_result({"pages": 3}, 1000)
        event = await store.complete(job.id, "w1", at(1), row.id, [row], text)
        assert event is not None
        done = await store.get_job(job.id)
        assert done.result == {"pages": 3} and done.result_asset_id == row.id
        assert event.job.result == {"pages": 3} and event.job.result_asset_id == row.id

    async def test_a_lost_lease_stores_no_result(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        before = await store.last_event_id()
        text = encode_result({"x": 1}, 1000)
        assert await store.complete(job.id, "someone-else", at(1), result=text) is None
        await expect_unchanged(store, job, before)
        row = make_asset(c, job_id=job.id)
        assert await store.complete(job.id, "someone-else", at(1), row.id, [row], text) is None
        await expect_unchanged(store, job, before)

    async def test_a_result_is_the_last_attempts_and_final(self, store: JobStore) -> None:
        """Only `done` writes a result, and a done job is not retried: failed attempts
        leave none, the one that finishes writes its own, and it never changes after."""
        c = await company(store)
        job = await running(store, c)
        await store.fail(job.id, "w1", at(1), "boom")
        await store.retry(job.id, at(2))
        [job] = await claim(store, now=at(2))
        assert job.result is None and job.attempt == 2
        await store.complete(job.id, "w1", at(3), result=encode_result({"attempt": 2}, 100))
        with pytest.raises(InvalidTransition):
            await store.retry(job.id, at(4))
        done = await store.get_job(job.id)
        assert done is not None and done.result == {"attempt": 2}

    # --- failure details -------------------------------------------------------------

    TRACEBACK = (
        "Traceback (most recent call last):\n"
        '  File "handlers.py", line 3, in haiku\n'
        "    topic = ctx.input['topic']\n"
        "KeyError: 'topic'\n"
    )

    async def test_a_failed_attempt_keeps_its_type_and_traceback(self, store: JobStore) -> None:
        """Each attempt's failure is in its own event; the job holds the latest one."""
        c = await company(store)
        job = await running(store, c, max_attempts=2)
        before = await store.last_event_id()
        retrying = await store.fail(
            job.id,
            "w1",
            at(2),
            "KeyError: 'topic'",
            retry_at=at(2),
            error_type="KeyError",
            error_traceback=self.TRACEBACK,
        )
        after = await expect_one_event(store, before, retrying, EventType.RETRYING, at(2))
        assert after.error_type == "KeyError" and after.error_traceback == self.TRACEBACK
        assert retrying.job.to_dict()["errorType"] == "KeyError"
        assert retrying.job.to_dict()["errorTraceback"] == self.TRACEBACK
        [again] = await claim(store, now=at(3))
        assert again.error_type == "KeyError"  # kept until the next attempt ends
        failed = await store.fail(
            job.id, "w1", at(4), "nope", error_type="mymodule.MyError", error_traceback="tb 2\x00"
        )
        assert failed is not None and failed.type == EventType.FAILED
        ended = await store.get_job(job.id)
        assert ended.error_type == "mymodule.MyError" and ended.error_traceback == "tb 2\ufffd"
        first, second = [
            e.job for e in await store.events_after(before) if e.type != EventType.RUNNING
        ]
        assert (first.error_type, first.error_traceback) == ("KeyError", self.TRACEBACK)
        assert (second.error_type, second.error_traceback) == ("mymodule.MyError", "tb 2\ufffd")
        [listed] = (await store.list_jobs(c, limit=1)).items
        assert listed.error_type == "mymodule.MyError"
        retried = await store.retry(job.id, at(5))
        assert retried.job.error_type == "mymodule.MyError"  # kept, as the message is
        [job] = await claim(store, now=at(5))
        done = await store.complete(job.id, "w1", at(6))
        assert done is not None
        assert (done.job.error_message, done.job.error_type, done.job.error_traceback) == (
            None,
            None,
            None,
        )

    async def test_a_failure_without_details_has_none(self, store: JobStore) -> None:
        c = await company(store)
        job = await running(store, c)
        event = await store.fail(job.id, "w1", at(1), "boom")
        assert event is not None
        assert event.job.error_type is None and event.job.error_traceback is None
        wire = event.job.to_dict()
        assert wire["errorType"] is None and wire["errorTraceback"] is None

    async def test_cancels_and_the_reaper_set_the_error_type(self, store: JobStore) -> None:
        c = await company(store)
        details = {"error_type": "ValueError", "error_traceback": "tb"}
        # A cancel request turns a failed attempt into a cancel: no exception details.
        asked = await running(store, c, max_attempts=2)
        await store.cancel(asked.id, at(1))
        event = await store.fail(asked.id, "w1", at(2), "boom", retry_at=at(3), **details)
        assert event is not None and event.type == EventType.CANCELLED
        assert (event.job.error_type, event.job.error_traceback) == (None, None)
        # Cancelled jobs (queued, or stopped while running) have no error type.
        job = await running(store, c, max_attempts=3)
        await store.fail(job.id, "w1", at(2), "boom", retry_at=at(2), **details)
        outcome = await store.cancel(job.id, at(3))
        assert outcome.event is not None
        assert (outcome.job.error_type, outcome.job.error_traceback) == (None, None)
        stopped = await running(store, c)
        await store.cancel(stopped.id, at(3))
        marked = await store.mark_cancelled(stopped.id, "w1", at(4))
        assert marked is not None and marked.job.error_type is None
        # A lost worker: WORKER_LOST_TYPE, and no traceback (there was no exception).
        await store.retry(job.id, at(5))
        [job] = await claim(store, now=at(5), owner="dead")
        await store.fail(job.id, "dead", at(6), "boom", retry_at=at(6), **details)
        [job] = await claim(store, now=at(6), owner="dead")
        events = await store.reap_expired(now=at(50), expired_before=at(40), retry_at=at(60))
        [reaped] = [e for e in events if e.job_id == job.id]
        assert reaped.type == EventType.FAILED
        assert reaped.job.error_message == WORKER_LOST
        assert (reaped.job.error_type, reaped.job.error_traceback) == (WORKER_LOST_TYPE, None)
        assert (await store.get_job(job.id)).error_type == WORKER_LOST_TYPE
