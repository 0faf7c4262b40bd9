"""Several callboard nodes sharing one real PostgreSQL database, in real time.

What only PostgreSQL makes possible (or breakable): two nodes claiming from one
queue, a cancel crossing nodes by NOTIFY, concurrent claims in claim order,
migrations raced by nodes starting together, event ids visible in id order however
writers commit, and a node riding out the loss of every connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import trio

import callboard
from callboard import JobSpec, JobStatus, Lagged
from callboard.errors import StoreUnavailable
from callboard.jobs import EventType, NewJob, new_id
from callboard.store.base import NodeInfo
from callboard.store.migrations import discover
from callboard.store.postgres import PostgresStore, SchemaOutdated

pytestmark = pytest.mark.trio

QUEUED, RUNNING, DONE = EventType.QUEUED, EventType.RUNNING, EventType.DONE


# --- helpers ---------------------------------------------------------------------------


async def _in_asyncio(coro: Any, timeout: float = 60) -> Any:  # noqa: ASYNC109
    """Run an asyncio coroutine (raw asyncpg) on a plain asyncio loop in a thread.
    trio cannot cancel that thread, so the coroutine bounds itself."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return await trio.to_thread.run_sync(asyncio.run, bounded())


async def _sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def _store_events(store: Any) -> list[Any]:
    """Every stored event, in id order."""
    events: list[Any] = []
    while page := await store.events_after(events[-1].id if events else 0, limit=1000):
        events.extend(page)
    return events


async def _all_jobs(rt: callboard.RunningBoard, company_id: str) -> list[callboard.Job]:
    jobs: list[callboard.Job] = []
    cursor = None
    while True:
        page = await rt.list(company_id, limit=500, cursor=cursor)
        jobs.extend(page.items)
        if page.next_cursor is None:
            return jobs
        cursor = page.next_cursor


async def _collect(
    rt: callboard.RunningBoard,
    seen: list[Any],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Append every job event (from id 1 on) to `seen`, for ever: on Lagged (or a
    replay read failing in an outage) subscribe again after the last id seen."""
    started = False
    while True:
        after = seen[-1].id if seen else 0
        try:
            async with rt.subscribe(after_event_id=after, buffer=20_000) as events:
                if not started:
                    started = True
                    task_status.started()
                async for event in events:
                    seen.append(event)
        except (Lagged, StoreUnavailable):
            await trio.sleep(0.05)
            continue
        raise AssertionError("the event stream ended while the node was running")


async def _until(predicate: Callable[[], Any], what: str, timeout: float) -> None:  # noqa: ASYNC109
    """Poll `predicate()` until true (a store outage counts as not yet)."""
    with trio.move_on_after(timeout):
        while True:
            try:
                if await predicate():
                    return
            except StoreUnavailable:
                pass
            await trio.sleep(0.05)
    raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")


def _strictly_increasing(ids: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(ids))


# --- 1. two nodes, one queue -----------------------------------------------------------


@pytest.mark.slow
async def test_two_nodes_run_every_job_once_and_see_the_same_events(pg_url, tmp_path):
    total, chunk = 2_000, 100
    ran: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}

    def node(name: str) -> callboard.Board:
        board = callboard.Board(
            database_url=pg_url,
            workers=4,
            storage_dir=tmp_path / name,
            lease_seconds=30,
            poll_interval=0.5,
        )

        @board.handler("record")
        async def record(ctx: callboard.JobContext) -> None:
            ran[name].append((name, ctx.job_id))
            await trio.lowlevel.checkpoint()

        return board

    seen: dict[str, list[Any]] = {"a": [], "b": []}
    async with (
        node("a").running() as rt_a,
        node("b").running() as rt_b,
        trio.open_nursery() as collectors,
    ):
        await collectors.start(_collect, rt_a, seen["a"])
        await collectors.start(_collect, rt_b, seen["b"])
        company = await rt_a.create_company("acme")
        submitted: list[str] = []

        async def submit_via(rt: callboard.RunningBoard) -> None:
            for _ in range(total // 2 // chunk):
                jobs = await rt.submit_many(company.id, [JobSpec("record")] * chunk)
                submitted.extend(job.id for job in jobs)

        with trio.fail_after(60):
            async with trio.open_nursery() as submitters:
                submitters.start_soon(submit_via, rt_a)
                submitters.start_soon(submit_via, rt_b)

        async def all_done() -> bool:
            counts = await rt_b.counts(company.id)
            return counts[JobStatus.DONE] + counts[JobStatus.FAILED] == total

        await _until(all_done, "all jobs done", timeout=60)

        stored = await _store_events(rt_a.store)
        head = stored[-1].id

        async def both_caught_up() -> bool:
            await trio.lowlevel.checkpoint()
            return all(s and s[-1].id >= head for s in seen.values())

        await _until(both_caught_up, "both subscribers at the head", timeout=30)
        jobs = await _all_jobs(rt_a, company.id)
        collectors.cancel_scope.cancel()

    assert len(submitted) == len(set(submitted)) == total
    # Every job ran exactly once, on one node or the other, and both took part.
    runs = Counter(job_id for name in ran for _, job_id in ran[name])
    assert set(runs) == set(submitted)
    assert [job_id for job_id, n in runs.items() if n > 1] == []
    assert ran["a"] and ran["b"], {name: len(r) for name, r in ran.items()}
    assert len(jobs) == total
    assert {(job.status, job.attempt) for job in jobs} == {(JobStatus.DONE, 1)}

    # The event log: gapless ids from 1, three events a job, in lifecycle order.
    ids = [e.id for e in stored]
    assert ids == list(range(1, 3 * total + 1))
    by_job: dict[str, list[EventType]] = defaultdict(list)
    for event in stored:
        by_job[event.job_id].append(event.type)
    assert set(by_job) == set(submitted)
    assert {tuple(types) for types in by_job.values()} == {(QUEUED, RUNNING, DONE)}

    # Each node's subscriber saw exactly that log, in that order, whichever node wrote.
    expected = [(e.id, e.type, e.job_id) for e in stored]
    for name, events in seen.items():
        got = [(e.id, e.type, e.job_id) for e in events]
        assert _strictly_increasing([e.id for e in events]), name
        assert got == expected, f"node {name} saw a different event sequence"


async def test_a_producer_nobody_listens_to_reads_no_events_back_until_someone_does(
    pg_url, tmp_path
):
    """A node without workers and without listeners (a producer) does not read back
    the events the worker node commits; a subscription or a `wait` that starts later
    on it still gets every event committed after it began, in order."""
    producer = callboard.Board(database_url=pg_url, workers=0, storage_dir=tmp_path / "p")
    runner = callboard.Board(database_url=pg_url, workers=2, storage_dir=tmp_path / "w")
    async with producer.running() as rt_p, runner.running() as rt_w:
        company = await rt_p.create_company("acme")
        jobs = await rt_p.submit_many(company.id, [JobSpec("noop")] * 20)

        async def all_done() -> bool:
            return (await rt_w.counts(company.id))[JobStatus.DONE] == len(jobs)

        await _until(all_done, "the worker node running every job", timeout=30)
        feed = rt_p.store._feed  # type: ignore[attr-defined]
        head = await rt_p.store.last_event_id()

        async def skipped_to_head() -> bool:
            await trio.lowlevel.checkpoint()
            return feed.published == head

        await _until(skipped_to_head, "the producer's feed at the head", timeout=10)
        assert feed.catch_ups == 0
        assert feed.skipped >= 2 * len(jobs)  # each job's running and done, unread

        async with rt_p.subscribe(company_id=company.id) as events:
            job = await rt_p.submit(company.id, "noop")
            with trio.fail_after(10):
                seen = [await events.receive() for _ in range(3)]
            assert [(e.job_id, e.type) for e in seen] == [
                (job.id, QUEUED),
                (job.id, RUNNING),
                (job.id, DONE),
            ]
        assert feed.catch_ups > 0
        waited = await rt_p.submit(company.id, "noop")
        assert (await rt_p.wait(waited.id, timeout=10)).status is JobStatus.DONE


# --- 2. a cancel crosses nodes ---------------------------------------------------------


async def test_a_cancel_on_one_node_stops_the_job_running_on_another(pg_url, tmp_path):
    front = callboard.Board(
        database_url=pg_url,
        workers=0,
        storage_dir=tmp_path / "a",
        poll_interval=0.5,
        demo_types=True,
    )
    # A lease renewal (lease/3 = 40 s) would come far too late: only the NOTIFY on
    # callboard_cancel can stop the job within the test's 10 s.
    back = callboard.Board(
        database_url=pg_url,
        workers=2,
        storage_dir=tmp_path / "b",
        lease_seconds=120,
        poll_interval=0.5,
        shutdown_grace=1,
        demo_types=True,
    )
    async with front.running() as rt_a, back.running() as rt_b:
        company = await rt_a.create_company("acme")
        job = await rt_a.submit(company.id, "demo.sleep", {"seconds": 600})

        async def running() -> bool:
            return (await rt_a.get(job.id)).status is JobStatus.RUNNING

        await _until(running, "the job running on node B", timeout=20)
        assert (await rt_a.get(job.id)).lease_owner == rt_b.lease_owner

        cancelling = await rt_a.cancel(job.id)
        assert cancelling.status is JobStatus.RUNNING and cancelling.cancel_requested
        with trio.fail_after(20):
            final = await rt_a.wait(job.id, timeout=10)
        assert final.status is JobStatus.CANCELLED

        async def node_b_idle() -> bool:
            await trio.lowlevel.checkpoint()
            return all(state.job_id is None for state in rt_b.worker_states())

        await _until(node_b_idle, "node B's workers idle", timeout=10)


# --- 3. concurrent claims --------------------------------------------------------------


def _claim_key(job: Any) -> tuple[Any, ...]:
    return (-job.priority, job.run_at, job.created_at)


async def test_concurrent_claims_take_each_job_once_in_about_claim_order(pg_url):
    rng = random.Random(20_240_611)
    claimers, limit, total = 4, 5, 300
    base = datetime.now(UTC).replace(microsecond=0)
    # Distinct run_at values (millisecond steps), so the claim order has no ties;
    # about a sixth of them lie after the claim's `now`.
    offsets = rng.sample(range(-3_600_000, 700_000), total)
    async with PostgresStore(pg_url).opened() as store:
        company = await store.create_company("acme", base - timedelta(hours=2))
        new_jobs = [
            NewJob(
                id=new_id(),
                company_id=company.id,
                job_type="t",
                input={"n": n},
                priority=rng.randint(-2, 3),
                max_attempts=1,
                timeout_seconds=None,
                run_at=base + timedelta(milliseconds=offset),
                source_task_id=None,
                idempotency_key=None,
            )
            for n, offset in enumerate(offsets)
        ]
        for start in range(0, total, 50):
            created = base - timedelta(hours=2) + timedelta(seconds=start)
            await store.insert_jobs(new_jobs[start : start + 50], created)
        runnable = {j.id for j in new_jobs if j.run_at <= base}
        future = {j.id for j in new_jobs if j.run_at > base}
        assert runnable and future

        batches: list[tuple[str, list[tuple[Any, Any]]]] = []

        async def claimer(owner: str) -> None:
            while True:
                batch = await store.claim(
                    now=base,
                    limit=limit,
                    type_caps={"t": None},
                    lease_owner=owner,
                    lease_expires_at=base + timedelta(hours=1),
                )
                if not batch:
                    return
                batches.append((owner, batch))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for i in range(claimers):
                    nursery.start_soon(claimer, f"c{i}")
        leftover = await store.claim(
            now=base,
            limit=limit,
            type_caps={"t": None},
            lease_owner="late",
            lease_expires_at=base + timedelta(hours=1),
        )
        counts = await store.count_by_status(company.id)

    assert leftover == []
    claimed = [job.id for _, batch in batches for job, _ in batch]
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert set(claimed) == runnable
    assert counts[JobStatus.QUEUED] == len(future)
    assert counts[JobStatus.RUNNING] == len(runnable)
    assert len({owner for owner, _ in batches}) > 1, "the claimers did not run concurrently"

    for owner, batch in batches:
        assert 1 <= len(batch) <= limit
        jobs = [job for job, _ in batch]
        assert all(j.status is JobStatus.RUNNING and j.lease_owner == owner for j in jobs)
        assert all(j.attempt == 1 for j in jobs)
        assert [_claim_key(j) for j in jobs] == sorted(_claim_key(j) for j in jobs)
        event_ids = [event.id for _, event in batch]
        assert event_ids == list(range(event_ids[0], event_ids[0] + len(batch)))
        assert all(e.type is RUNNING and e.job_id == j.id for j, e in batch)

    # A claim skips only the jobs the other claims in flight hold (SKIP LOCKED), at
    # most `limit` each: so no batch is overtaken by more than that many better jobs
    # (ones claimed after it that it should have preferred to its own last job).
    key_of = {job.id: _claim_key(job) for _, batch in batches for job, _ in batch}
    event_of = {job.id: event.id for _, batch in batches for job, event in batch}
    for _, batch in batches:
        last_key, first_event = key_of[batch[-1][0].id], batch[0][1].id
        mine = {job.id for job, _ in batch}
        passed_over = [
            job_id
            for job_id, key in key_of.items()
            if key < last_key and event_of[job_id] > first_event and job_id not in mine
        ]
        assert len(passed_over) <= (claimers - 1) * limit, (len(passed_over), batch)

    # Globally (by running event id), no job is far from its place in the ideal order.
    # The window: claimers * limit (the jobs the claims in flight at once hold) when
    # claims commit in the order they lock; twice that, because a claim can still be
    # committing while another claimer finishes a whole claim (it happens on a loaded
    # two-core machine; the per-batch bound above is the strict one).
    by_event = sorted(event_of, key=event_of.__getitem__)
    ideal = {job_id: i for i, job_id in enumerate(sorted(key_of, key=key_of.__getitem__))}
    worst = max(abs(i - ideal[job_id]) for i, job_id in enumerate(by_event))
    assert worst < 2 * claimers * limit, f"a job was claimed {worst} places from its order"


# --- 4. migrations ---------------------------------------------------------------------


async def test_nodes_starting_together_apply_each_migration_once(pg_empty_url):
    stores = [PostgresStore(pg_empty_url), PostgresStore(pg_empty_url)]
    both_open = trio.Event()
    opened = 0

    async def open_one(store: PostgresStore) -> None:
        nonlocal opened
        async with store.opened():
            opened += 1
            if opened == len(stores):
                both_open.set()
            await both_open.wait()
            await store.ping()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(open_one, store)

    known = [m.version for m in discover("postgres")]
    assert known
    applied = sorted(v for store in stores for v in store.applied_migrations)
    assert applied == known, "each migration must be applied by exactly one of the nodes"
    rows = await _in_asyncio(_sql(pg_empty_url, "SELECT version FROM schema_version"))
    versions = [row["version"] for row in rows]
    assert sorted(versions) == known and len(set(versions)) == len(versions)


async def test_a_store_without_migrations_refuses_an_empty_database(pg_empty_url):
    with trio.fail_after(30), pytest.raises(SchemaOutdated, match="callboard migrate"):
        async with PostgresStore(pg_empty_url, migrate=False).opened():
            pass
    rows = await _in_asyncio(
        _sql(pg_empty_url, "SELECT to_regclass('schema_version') IS NULL AS absent")
    )
    assert rows[0]["absent"], "a refused start must not create anything"


# --- 5. the outbox trap ----------------------------------------------------------------

APPEND = (
    "SELECT callboard_append_events(ARRAY[$1::text], ARRAY[$2::text], "
    "ARRAY['content_job.progress'], ARRAY['{}'], ARRAY[now()])"
)
READ_AFTER = "SELECT id FROM content_job_events WHERE id > $1 ORDER BY id"


async def _seed_job(conn: asyncpg.Connection) -> tuple[str, str]:
    await conn.execute("INSERT INTO companies (id, name, created_at) VALUES ('c1', 'acme', now())")
    await conn.execute(
        "INSERT INTO content_jobs (id, company_id, job_type, status, input, run_at, "
        "created_at, updated_at) VALUES ('j1', 'c1', 't', 'queued', '{}', now(), now(), now())"
    )
    return "j1", "c1"


async def _two_writers_scenario(url: str) -> list[int]:
    connect = [asyncpg.connect(url, timeout=5) for _ in range(4)]
    reader, t1, t2, t3 = await asyncio.gather(*connect)
    try:
        job, company = await _seed_job(reader)
        observed: list[int] = []

        async def read() -> list[int]:
            ids = [r["id"] for r in await reader.fetch(READ_AFTER, observed[-1] if observed else 0)]
            observed.extend(ids)
            return ids

        # T1 takes id 1 and holds the event id lock until it commits.
        tx1 = t1.transaction()
        await tx1.start()
        assert await t1.fetchval(APPEND, job, company) == 1
        # T2 must wait for T1: it cannot take an id (let alone commit one) before.
        tx2 = t2.transaction()
        await tx2.start()
        second = asyncio.ensure_future(t2.fetchval(APPEND, job, company))
        await asyncio.sleep(0.3)
        assert not second.done(), "a second writer took an event id while the first held one"
        assert await read() == []
        await tx1.commit()
        assert await asyncio.wait_for(second, 10) == 2
        assert await read() == [1]
        await tx2.commit()
        assert await read() == [2]

        # A rolled-back append gives its id back: the next writer gets the next id.
        tx3 = t3.transaction()
        await tx3.start()
        assert await t3.fetchval(APPEND, job, company) == 3
        await tx3.rollback()
        assert await read() == []
        assert await t1.fetchval(APPEND, job, company) == 3
        assert await read() == [3]
        return observed
    finally:
        await asyncio.gather(*(c.close() for c in (reader, t1, t2, t3)))


async def test_event_ids_become_visible_in_id_order_across_transactions(pg_url):
    observed = await _in_asyncio(_two_writers_scenario(pg_url))
    assert observed == [1, 2, 3]


async def _stress_scenario(url: str, writers: int, each: int) -> tuple[list[int], list[int]]:
    setup = await asyncpg.connect(url, timeout=5)
    try:
        job, company = await _seed_job(setup)
    finally:
        await setup.close()
    conns = await asyncio.gather(*(asyncpg.connect(url, timeout=5) for _ in range(writers + 1)))
    reader, writer_conns = conns[0], conns[1:]
    rng = random.Random(7)
    pauses = [[rng.random() * 0.003 for _ in range(each)] for _ in range(writers)]
    taken: list[int] = []
    seen: list[int] = []
    writing = True

    async def write(conn: asyncpg.Connection, sleeps: list[float]) -> None:
        for pause in sleeps:
            async with conn.transaction():
                taken.append(await conn.fetchval(APPEND, job, company))
                await asyncio.sleep(pause)

    async def read() -> None:
        while True:
            still_writing = writing
            rows = await reader.fetch(READ_AFTER, seen[-1] if seen else 0)
            ids = [r["id"] for r in rows]
            # Each read continues exactly where the last one stopped.
            start = seen[-1] + 1 if seen else 1
            assert ids == list(range(start, start + len(ids))), (seen[-3:], ids[:5])
            seen.extend(ids)
            if not still_writing:
                return
            await asyncio.sleep(0)

    try:
        reading = asyncio.ensure_future(read())
        await asyncio.gather(*(write(c, s) for c, s in zip(writer_conns, pauses, strict=True)))
        writing = False
        await reading
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return taken, seen


@pytest.mark.slow
async def test_a_reader_after_the_last_id_never_skips_with_concurrent_writers(pg_url):
    writers, each = 8, 50
    taken, seen = await _in_asyncio(_stress_scenario(pg_url, writers, each))
    assert sorted(taken) == list(range(1, writers * each + 1))
    assert seen == list(range(1, writers * each + 1))


# --- 6. losing every connection --------------------------------------------------------

TERMINATE_OTHERS = (
    "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.mark.slow
async def test_a_node_rides_out_its_connections_being_killed(pg_url, tmp_path):
    total = 300
    board = callboard.Board(
        database_url=pg_url,
        workers=4,
        storage_dir=tmp_path / "a",
        lease_seconds=3,
        poll_interval=0.5,
        shutdown_grace=1,
    )

    @board.handler("x", max_attempts=5)
    async def short(ctx: callboard.JobContext) -> None:
        await trio.sleep(0.02)

    seen: list[Any] = []
    async with board.running() as rt, trio.open_nursery() as collectors:
        await collectors.start(_collect, rt, seen)
        company = await rt.create_company("acme")
        jobs = await rt.submit_many(company.id, [JobSpec("x")] * total)
        killed = []
        done_at_first_kill = None
        for _ in range(3):
            await trio.sleep(0.15)
            if done_at_first_kill is None:
                done_at_first_kill = sum(1 for e in seen if e.type is DONE)
            killed.append((await _in_asyncio(_sql(pg_url, TERMINATE_OTHERS)))[0]["n"])

        async def all_done() -> bool:
            counts = await rt.counts(company.id)
            assert counts[JobStatus.FAILED] == counts[JobStatus.CANCELLED] == 0, counts
            return counts[JobStatus.DONE] == total

        await _until(all_done, "every job done", timeout=60)
        final = []
        for job in jobs:
            with trio.fail_after(30):
                while True:
                    try:
                        final.append(await rt.wait(job.id, timeout=20))
                        break
                    except StoreUnavailable:
                        await trio.sleep(0.05)
        stored = await _store_events(rt.store)

        async def caught_up() -> bool:
            await trio.lowlevel.checkpoint()
            return bool(seen) and seen[-1].id >= stored[-1].id

        await _until(caught_up, "the subscriber at the head", timeout=30)
        collectors.cancel_scope.cancel()

    assert killed[0] > 0, "nothing was connected to kill"
    assert done_at_first_kill is not None and done_at_first_kill < total, (
        "the jobs were all done before the first kill"
    )
    assert [job.status for job in final] == [JobStatus.DONE] * total
    assert all(1 <= job.attempt <= 5 for job in final)
    ids = [e.id for e in seen]
    assert _strictly_increasing(ids)
    assert ids == [e.id for e in stored] == list(range(1, len(stored) + 1))


# --- node presence -----------------------------------------------------------------------


class _Ears:
    """The payloads of the event notifications a store hears (set up before it opens)."""

    def __init__(self, store: PostgresStore) -> None:
        self.heard: list[str] = []
        self._changed = trio.Event()
        forward = store._events_notified

        def hear(payload: str) -> None:
            self.heard.append(payload)
            self._changed.set()
            forward(payload)

        store._events_notified = hear  # type: ignore[method-assign]

    async def until(self, payload: str) -> None:
        while payload not in self.heard:
            self._changed = trio.Event()
            await self._changed.wait()


async def test_commits_notify_the_other_nodes_only_while_there_are_any(pg_url):
    """A node alone is not woken by its own NOTIFY after every commit; with a second
    node there, both hear every commit; once it is forgotten, the first is alone
    again. A NOTIFY sent after a write arrives after any the write sent (commit
    order), so it marks the end of what there was to hear. (A running node announces
    itself, actors/presence.py; these bare stores do it by hand.)"""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    marker = "-1"

    def me(name: str) -> NodeInfo:
        return NodeInfo(name, "host", 1, now, "s3://bucket")

    async def write_then_mark(store: PostgresStore, company_id: str, *ears: _Ears) -> None:
        for e in ears:
            e.heard.clear()
        job = NewJob(new_id(), company_id, "t", {}, 0, 1, None, now, None, None)
        await store.insert_jobs([job], now)
        await _in_asyncio(_sql(pg_url, "SELECT pg_notify('callboard_events', $1)", marker))
        with trio.fail_after(10):
            for e in ears:
                await e.until(marker)

    a = PostgresStore(pg_url)
    ears_a = _Ears(a)
    async with a.opened():
        await a.announce_node(me("a"), now, now)
        company = await a.create_company("acme", now)
        await write_then_mark(a, company.id, ears_a)
        assert ears_a.heard == [marker]

        b = PostgresStore(pg_url)
        ears_b = _Ears(b)
        async with b.opened():
            await b.announce_node(me("b"), now, now)
            await write_then_mark(a, company.id, ears_a, ears_b)
            head = str(await a.last_event_id())
            assert ears_b.heard == [head, marker] and ears_a.heard == [head, marker]
            nodes = await _in_asyncio(_sql(pg_url, "SELECT node_id FROM callboard_nodes"))
            assert {r["node_id"] for r in nodes} == {"a", "b"}
            await b.forget_node("b")

        await write_then_mark(a, company.id, ears_a)
        assert ears_a.heard == [marker]
        nodes = await _in_asyncio(_sql(pg_url, "SELECT node_id FROM callboard_nodes"))
        assert [r["node_id"] for r in nodes] == ["a"]


async def test_queued_work_wakes_another_node_before_its_events_are_read(pg_url):
    """A commit that queues work notifies `callboard_queued` first: the other node's
    dispatcher hook runs before that node has read (and published) the queued event,
    so its claim does not wait for the read. The writer's own node is not woken by its
    own notification (its submit woke its dispatcher already), and a job inserted
    straight into running wakes nobody: there is nothing to claim."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    seen: list[str] = []
    woken = trio.Event()

    def wake_b() -> None:
        seen.append(f"wake at {b._feed.published}")
        woken.set()

    a.on_jobs_queued = lambda: seen.append("a woken")
    b.on_jobs_queued = wake_b
    published = trio.Event()
    queued = NewJob(new_id(), "", "t", {}, 0, 1, None, now, None, None)

    def publish_b(events: list[Any]) -> None:
        seen.extend(f"published {e.id}" for e in events)
        if any(e.job_id == queued.id for e in events):
            published.set()

    b.on_commit = publish_b
    async with a.opened(), b.opened():
        # Two nodes are there, so commits notify (a running node announces itself).
        for store, name in ((a, "a"), (b, "b")):
            await store.announce_node(NodeInfo(name, "host", 1, now, "s3://b"), now, now)
        company = await a.create_company("acme", now)
        before = await a.last_event_id()
        started = NewJob(new_id(), company.id, "t", {}, 0, 1, None, now, None, None)
        assert await a.insert_running(
            started, now, lease_owner="a", lease_expires_at=now + timedelta(seconds=30)
        )
        queued = dataclasses.replace(queued, company_id=company.id)
        [inserted] = await a.insert_jobs([queued], now)
        event = inserted.event
        with trio.fail_after(10):
            await woken.wait()
            await published.wait()
        assert seen == [
            f"published {before + 1}",
            f"published {before + 2}",
            f"wake at {before + 2}",
            f"published {event.id}",
        ]
        assert b._feed.queued_through == event.id
