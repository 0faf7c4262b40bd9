"""PostgreSQL-only store checks (the shared contract runs in test_store_contract.py):
the schema the migrations build is the one schema.sql describes, and a store that
cannot reach its server says so in one typed error."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from callboard.errors import StoreUnavailable
from callboard.store.migrations import read_schema
from callboard.store.postgres import PostgresStore
from store import pgkit

# Every object of the public schema, in a form that does not depend on the order of
# creation: columns, constraints, indexes, functions.
CATALOG = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default,
               is_identity, identity_generation
        FROM information_schema.columns WHERE table_schema = 'public'
          AND table_name <> 'schema_version'
        ORDER BY table_name, column_name""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text <> 'schema_version'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'schema_version'
        ORDER BY 1, 2""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
    "rows": """
        SELECT 'event_log_state', last_id::text FROM event_log_state
        UNION ALL SELECT 'event_prune_state', pruned_through::text FROM event_prune_state""",
}


async def _catalog(url: str) -> dict[str, list[tuple]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in CATALOG.items()}
    finally:
        await conn.close()


async def _run_script(url: str, script: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(script)
    finally:
        await conn.close()


def test_schema_sql_is_what_the_migrations_build(pg_url):
    """schema.sql, applied to an empty database, gives the same catalog as the
    migrations (pg_url is a database migrated from the session's template)."""
    fresh = pgkit.create_database()
    try:
        fresh_url = pgkit.url_for(fresh)
        asyncio.run(_run_script(fresh_url, read_schema("postgres")))
        assert asyncio.run(_catalog(fresh_url)) == asyncio.run(_catalog(pg_url))
    finally:
        pgkit.drop_database(fresh)


@pytest.mark.trio
async def test_an_unreachable_server_is_one_typed_error():
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    store = PostgresStore("postgresql://callboard:secret@127.0.0.1:1/callboard")
    with pytest.raises(StoreUnavailable) as caught:
        async with store.opened():
            pass
    message = str(caught.value)
    assert "cannot connect to postgresql://callboard@127.0.0.1:1/callboard" in message
    assert "secret" not in message


@pytest.mark.trio
async def test_text_postgresql_cannot_hold_is_a_clear_error_or_replaced(pg_url):
    from datetime import UTC, datetime, timedelta

    from callboard.errors import InvalidRequest
    from callboard.jobs import NewJob, new_id

    now = datetime(2030, 1, 1, tzinfo=UTC)
    async with PostgresStore(pg_url).opened() as store:
        # Input from a client: refused as bad input (400), not an outage (503).
        with pytest.raises(InvalidRequest, match="refused a value"):
            await store.create_company("nul\x00name", now)
        company = await store.create_company("acme", now)
        job = NewJob(new_id(), company.id, "t", {}, 0, 1, None, now, None, None)
        await store.insert_jobs([job], now)
        [(claimed, _)] = await store.claim(
            now=now,
            limit=1,
            type_caps={"t": None},
            lease_owner="me",
            lease_expires_at=now + timedelta(seconds=30),
        )
        # A handler's message: stored with the NUL replaced, so the outcome is recorded.
        progress = await store.record_progress(claimed.id, "me", 10, "a\x00b", now)
        assert progress is not None and progress.job.progress.message == "a\ufffdb"
        failed = await store.fail(claimed.id, "me", now, "boom\x00!")
        assert failed is not None and failed.job.error_message == "boom\ufffd!"


@pytest.mark.trio
async def test_a_claim_whose_answer_was_lost_still_hands_out_its_jobs(pg_url):
    from datetime import UTC, datetime, timedelta

    from callboard.jobs import EventType, JobStatus, NewJob, new_id
    from callboard.store.postgres.store import Q

    now = datetime(2030, 1, 1, tzinfo=UTC)
    async with PostgresStore(pg_url).opened() as store:
        company = await store.create_company("acme", now)
        await store.insert_jobs(
            [NewJob(new_id(), company.id, "t", {}, 0, 1, None, now, None, None) for _ in range(3)],
            now,
        )
        real_fetch = store._driver.fetch

        async def fetch(sql, *args, write=False):
            rows = await real_fetch(sql, *args, write=write)
            if sql == Q["claim"]:  # committed, then the connection "drops"
                raise StoreUnavailable("connection lost after COMMIT")
            return rows

        store._driver.fetch = fetch
        claimed = await store.claim(
            now=now,
            limit=2,
            type_caps={"t": None},
            lease_owner="me",
            lease_expires_at=now + timedelta(seconds=30),
        )
        store._driver.fetch = real_fetch
        assert len(claimed) == 2
        assert all(j.status is JobStatus.RUNNING and j.lease_owner == "me" for j, _ in claimed)
        assert all(e.type is EventType.RUNNING and e.job_id == j.id for j, e in claimed)
        stored = await store.events_after(0, limit=100)
        assert [e.id for _, e in claimed] == [e.id for e in stored if e.type is EventType.RUNNING]


@pytest.mark.trio
async def test_a_start_on_submit_whose_answer_was_lost_still_starts(pg_url):
    from datetime import UTC, datetime, timedelta

    from callboard.jobs import EventType, JobStatus, NewJob, new_id
    from callboard.store.postgres.store import Q

    now = datetime(2030, 1, 1, tzinfo=UTC)
    async with PostgresStore(pg_url).opened() as store:
        company = await store.create_company("acme", now)
        real_fetchrow = store._driver.fetchrow
        refused_before_commit = True

        async def fetchrow(sql, *args, write=False):
            if sql == Q["insert_running"] and refused_before_commit:
                raise StoreUnavailable("connection lost before the statement reached it")
            row = await real_fetchrow(sql, *args, write=write)
            if sql == Q["insert_running"]:  # committed, then the connection "drops"
                raise StoreUnavailable("connection lost after COMMIT")
            return row

        store._driver.fetchrow = fetchrow
        lease = {"lease_owner": "me", "lease_expires_at": now + timedelta(seconds=30)}
        # Nothing committed: the error stands, and nothing was written.
        lost = NewJob(new_id(), company.id, "t", {}, 0, 1, None, now, None, None)
        with pytest.raises(StoreUnavailable, match="before the statement"):
            await store.insert_running(lost, now, **lease)
        assert await store.get_job(lost.id) is None
        # Committed, answer lost: the job comes back started, as if answered.
        refused_before_commit = False
        new = NewJob(new_id(), company.id, "t", {"n": 1}, 0, 1, None, now, None, None)
        started = await store.insert_running(new, now, **lease)
        store._driver.fetchrow = real_fetchrow
        assert started is not None
        inserted, running = started
        assert inserted.created and inserted.job.status is JobStatus.QUEUED
        assert running.status is JobStatus.RUNNING and running.lease_owner == "me"
        assert running.attempt == 1 and running.input == {"n": 1}
        stored = await store.events_after(0, limit=100)
        assert [e.type for e in stored] == [EventType.QUEUED, EventType.RUNNING]
        assert inserted.event == stored[0]


@pytest.mark.trio
async def test_two_nodes_claiming_at_once_never_exceed_a_company_cap(pg_url):
    # The cap is counted under the company's row lock: without it, two claims that
    # start together both count the same running jobs and both fill the gap.
    from contextlib import AsyncExitStack
    from datetime import UTC, datetime, timedelta

    import trio

    from callboard.jobs import JobStatus, NewJob, new_id

    now = datetime(2030, 1, 1, tzinfo=UTC)
    caps = {"a": 3, "b": 2}
    async with AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(PostgresStore(pg_url).opened()) for _ in "12"]
        ids = {}
        for name, cap in caps.items():
            ids[name] = (await nodes[0].create_company(name, now)).id
            await nodes[0].set_company_max_running(ids[name], cap)
            await nodes[0].insert_jobs(
                [
                    NewJob(new_id(), ids[name], "t", {}, 0, 1, None, now, None, None)
                    for _ in range(60)
                ],
                now,
            )
        taken: list = []

        async def claim(node: PostgresStore, owner: str) -> None:
            taken.extend(
                await node.claim(
                    now=now,
                    limit=4,
                    type_caps={"t": None},
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=30),
                )
            )

        for _ in range(8):
            taken.clear()
            async with trio.open_nursery() as nursery:
                for i in range(16):
                    nursery.start_soon(claim, nodes[i % 2], f"n{i % 2}")
            for name, cap in caps.items():
                counts = await nodes[1].count_by_status(ids[name])
                # At the cap exactly: never over it, and a claim does take up to it.
                assert counts[JobStatus.RUNNING] == cap, (name, counts)
            # Some end, so the next round has room to race for.
            for job, _ in taken[::2]:
                await nodes[0].complete(job.id, job.lease_owner, now)


_FILL = """
INSERT INTO companies (id, name, created_at)
SELECT 'co-' || g, 'co-' || g, now() FROM generate_series(1, 1000) AS g;
INSERT INTO content_jobs (id, company_id, job_type, status, input, run_at, created_at,
                          updated_at)
SELECT 'job-' || g, CASE WHEN g = 0 THEN 'co-2' ELSE 'co-1' END, 't', 'queued', '{}',
       '2030-01-01Z', '2030-01-01Z', '2030-01-01Z'
FROM generate_series(0, 5000) AS g;
"""


async def _claim_plans(url: str, state: str) -> tuple[set[str], list[str]]:
    """The companies one claim takes jobs of, and the plans of the statements inside
    it (auto_explain, plans only) on a connection opened as the store opens its own;
    the claim is rolled back. The queue is filled first (_FILL), and analyzed when
    state is "analyzed"; when it is "planned-empty", the connection claims from the
    empty queue first, as a node does from its start, so that PL/pgSQL caches the
    claim's generic plan, made for an empty table, before the queue fills
    ("planned-empty-analyzed": with statistics that say the queue is empty)."""
    import asyncpg

    from callboard.store.postgres.driver import _SERVER_SETTINGS
    from callboard.store.postgres.store import Q

    conn = await asyncpg.connect(url, server_settings=_SERVER_SETTINGS)
    plans: list[str] = []
    now = datetime(2030, 1, 1, tzinfo=UTC)
    try:
        assert await conn.fetchval("SHOW jit") == "off"
        if state.startswith("planned-empty"):
            if state == "planned-empty-analyzed":
                await conn.execute("ANALYZE")
            for _ in range(10):  # past the five custom plans before a generic one
                assert await conn.fetch(Q["claim"], ["t"], [None], 4, now, "me", now) == []
        await _run_script(url, _FILL + ("ANALYZE;" if state == "analyzed" else ""))
        conn.add_log_listener(lambda _conn, message: plans.append(message.message))
        await conn.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
            "SET auto_explain.log_nested_statements = on; "
            "SET auto_explain.log_level = 'notice'; SET client_min_messages = notice"
        )
        tx = conn.transaction()
        await tx.start()
        rows = await conn.fetch(Q["claim"], ["t"], [None], 4, now, "me", now)
        await tx.rollback()
        return {r["company_id"] for r in rows}, plans
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "state", ["analyzed", "no-statistics", "planned-empty", "planned-empty-analyzed"]
)
def test_a_claim_reads_each_company_from_its_own_index(pg_url, state):
    """One company's backlog must not be walked to find another's jobs: with an
    equality on the company, the planner may answer from the per-type index, and a
    claim among 1,000 companies with one backlog of 10,000 walked the backlog once per
    company (about a second a claim). Each company's jobs are matched by row
    comparisons that only content_jobs_fair (company, type, claim order) answers, and
    only companies with queued jobs are read (a skip scan of the same index). The
    lock of capped companies probes each capped company: as a join, on a table
    without statistics yet (a new installation), it read every queued job at each
    claim. JIT is off: compiling the claim cost about 50 ms a claim. And the plan
    must not depend on when it was made: a node claims from its start, so PL/pgSQL
    keeps a generic plan made while the queue was empty, and with it the claim read
    the type's whole queue from another index and sorted it, three times a claim,
    and its update walked the queue to find the jobs it had just locked."""
    companies, plans = asyncio.run(_claim_plans(pg_url, state))
    assert companies == {"co-1", "co-2"}  # fair: the one job of co-2 is among the four
    [claim] = [p for p in plans if "WITH RECURSIVE pairs" in p]
    assert "content_jobs_fair" in claim, claim
    # Nor a bitmap scan: it never marks an index entry dead, so the count of running
    # jobs read every job run since the last vacuum, at each claim.
    for other in ("content_jobs_claim", "content_jobs_queued_type", "Seq Scan", "Bitmap"):
        assert other not in claim, claim
    assert "JIT:" not in claim
    # The taken jobs are updated by their key, not found again in a walk of the queue.
    assert "Index Scan using content_jobs_pkey on content_jobs j" in claim, claim
    [lock_plan] = [p for p in plans if "FOR NO KEY UPDATE OF c" in p]
    assert "SubPlan" in lock_plan and "Aggregate" not in lock_plan, lock_plan
    assert "Seq Scan on content_jobs" not in lock_plan, lock_plan
