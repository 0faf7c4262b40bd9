"""What only the SQLite store has: migrations, the file lock, the batching writer
thread, interruptible reads. Real threads and real files, so no virtual clock here."""

from __future__ import annotations

import re
import sqlite3
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from callboard.errors import CompanyExists, StoreInUse, StoreUnavailable
from callboard.jobs import JobStatus, NewJob, new_id
from callboard.store.migrations import (
    apply_sqlite,
    discover,
    read_schema,
    split_sqlite_script,
    sqlite_schema,
)
from callboard.store.queries import load_queries, parse_queries
from callboard.store.sqlite import SqliteStore

pytestmark = pytest.mark.trio

T0 = datetime(2030, 1, 1, tzinfo=UTC)
Q = load_queries("sqlite")


def new_job(company_id: str, **kw) -> NewJob:
    fields = {
        "id": new_id(),
        "company_id": company_id,
        "job_type": "noop",
        "input": {},
        "priority": 0,
        "max_attempts": 1,
        "timeout_seconds": None,
        "run_at": T0,
        "source_task_id": None,
        "idempotency_key": None,
    }
    return NewJob(**{**fields, **kw})


@pytest.fixture
async def db(tmp_path):
    store = SqliteStore(tmp_path / "callboard.db")
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


class WriterGate:
    """Holds the writer thread inside a transaction, so the test can line up requests
    behind it and know they will run together in the next batch."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: sqlite3.Connection) -> None:
        self.entered.set()
        self.release.wait(10)

    async def hold(self, store: SqliteStore, nursery: trio.Nursery) -> None:
        nursery.start_soon(store._write, self)
        await trio.to_thread.run_sync(self.entered.wait, 10)


# --- SQL files and migrations -----------------------------------------------------------


async def test_migrations_replay_gives_schema_sql(tmp_path) -> None:
    migrated = sqlite3.connect(tmp_path / "migrated.db", isolation_level=None)
    declared = sqlite3.connect(tmp_path / "declared.db", isolation_level=None)
    try:
        assert apply_sqlite(migrated) == [m.version for m in discover("sqlite")]
        declared.executescript(read_schema("sqlite"))
        schema = sqlite_schema(migrated)
        assert schema == sqlite_schema(declared)
        tables = {name for type_, name, _, _ in schema if type_ == "table"}
        assert tables == {
            "companies",
            "api_tokens",
            "content_jobs",
            "content_job_events",
            "event_log_state",
            "assets",
            "callboard_nodes",
            "schedules",
        }
    finally:
        migrated.close()
        declared.close()


async def test_schema_check_sees_a_difference(tmp_path) -> None:
    a = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    b = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    try:
        a.executescript(read_schema("sqlite"))
        b.executescript(read_schema("sqlite").replace("revoked_at TEXT", "revoked_at INTEGER"))
        assert sqlite_schema(a) != sqlite_schema(b)
    finally:
        a.close()
        b.close()


async def test_query_blocks() -> None:
    text = "-- header\n-- name: one\n-- doc\nSELECT 1;\n\n-- name: two\nSELECT 2;\n"
    assert parse_queries(text) == {"one": "-- doc\nSELECT 1;", "two": "SELECT 2;"}
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(ValueError, match="empty"):
        parse_queries("-- name: a\n-- only a comment\n-- name: b\nSELECT 1;\n")
    assert "claim" in Q and "insert_job" in Q


async def test_script_splitting_keeps_triggers_whole() -> None:
    script = (
        "-- a comment\nCREATE TABLE t (x INTEGER);\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE t SET x = 1;\n  SELECT 1;\nEND;\n"
        "-- trailing comment\n"
    )
    statements = split_sqlite_script(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


async def test_reopen_keeps_data_and_applies_nothing_twice(tmp_path) -> None:
    path = tmp_path / "callboard.db"
    first = SqliteStore(path)
    await first.open()
    assert first.applied_migrations == [m.version for m in discover("sqlite")]
    company = await first.create_company("acme", T0)
    [inserted] = await first.insert_jobs([new_job(company.id)], T0)
    await first.aclose()

    second = SqliteStore(path)
    await second.open()
    try:
        assert second.applied_migrations == []
        assert await second.get_company(company.id) == company
        assert await second.get_job(inserted.job.id) == inserted.job
        assert await second.last_event_id() == inserted.event.id  # type: ignore[union-attr]
    finally:
        await second.aclose()
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert [v for (v,) in rows] == [m.version for m in discover("sqlite")]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


async def test_a_newer_schema_is_refused(tmp_path) -> None:
    path = tmp_path / "callboard.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(Q["create_schema_version"])
    conn.execute(Q["record_migration"], {"version": 999, "name": "future"})
    conn.close()
    store = SqliteStore(path)
    with pytest.raises(StoreUnavailable, match="newer"):
        await store.open()
    await store.aclose()  # safe after a failed open
    # The failed open released the lock.
    again = SqliteStore(path)
    with pytest.raises(StoreUnavailable, match="newer"):
        await again.open()


async def test_open_creates_the_directory(tmp_path) -> None:
    store = SqliteStore(tmp_path / "a" / "b" / "callboard.db")
    await store.open()
    try:
        await store.ping()
        assert store.exclusive
    finally:
        await store.aclose()


# --- the file lock -----------------------------------------------------------------------


async def test_store_in_use(tmp_path) -> None:
    path = tmp_path / "callboard.db"
    first = SqliteStore(path)
    await first.open()
    second = SqliteStore(path)
    with pytest.raises(StoreInUse, match=str(path)):
        await second.open()
    await second.aclose()
    await first.ping()  # the failed second open did not disturb the first
    await first.aclose()
    third = SqliteStore(path)
    await third.open()
    await third.aclose()


HOLDER = """
import sys, trio
from callboard.store.sqlite import SqliteStore

async def main():
    store = SqliteStore(sys.argv[1])
    await store.open()
    print("ready", flush=True)
    await trio.sleep_forever()

trio.run(main)
"""


@pytest.mark.slow
async def test_lock_dies_with_a_killed_process(tmp_path) -> None:
    path = tmp_path / "callboard.db"
    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", HOLDER, str(path)], stdout=-1
        )
        try:
            assert proc.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(64)
                assert chunk, "the holder process exited early"
                line += chunk
            assert line == b"ready\n"
            store = SqliteStore(path)
            with pytest.raises(StoreInUse, match=f"pid {proc.pid}"):
                await store.open()
            proc.kill()  # SIGKILL: no cleanup runs, the kernel drops the flock
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()
        store = SqliteStore(path)
        await store.open()
        await store.aclose()


# --- the writer thread -------------------------------------------------------------------


async def test_concurrent_writes_share_commits(db: SqliteStore) -> None:
    company = await db.create_company("acme", T0)
    before = db.statistics().writer
    results = []

    async def insert() -> None:
        results.append(await db.insert_jobs([new_job(company.id)], T0))

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(insert)
    after = db.statistics().writer
    assert len(results) == 200 and all(r[0].created for r in results)
    assert after.requests - before.requests == 200
    assert after.commits - before.commits < 200
    assert after.largest_batch > 1
    assert (await db.count_by_status(company.id))[JobStatus.QUEUED] == 200
    events = await db.events_after(0, company_id=company.id)
    assert len(events) == 200
    assert [e.id for e in events] == sorted(e.id for e in events)


async def test_a_failing_request_fails_alone(db: SqliteStore) -> None:
    company = await db.create_company("acme", T0)
    gate = WriterGate()
    outcomes: dict[str, object] = {}

    async def run(name: str, fn) -> None:
        try:
            outcomes[name] = await fn()
        except Exception as exc:
            outcomes[name] = exc

    def half_then_boom(conn: sqlite3.Connection) -> None:
        conn.execute(Q["insert_company"], {"id": new_id(), "name": "ghost", "created_at": "x"})
        raise RuntimeError("boom")

    async with trio.open_nursery() as nursery:
        await gate.hold(db, nursery)
        for i in range(5):
            nursery.start_soon(run, f"ok{i}", lambda: db.insert_jobs([new_job(company.id)], T0))
        nursery.start_soon(run, "dup", lambda: db.create_company("acme", T0))
        nursery.start_soon(run, "boom", lambda: db._write(half_then_boom))
        nursery.start_soon(run, "bad_sql", lambda: db._write(lambda c: c.execute("SELEC 1")))
        nursery.start_soon(run, "beta", lambda: db.create_company("beta", T0))
        await trio.testing.wait_all_tasks_blocked()
        before = db.statistics().writer
        assert before.queued == 9
        gate.release.set()
    after = db.statistics().writer
    assert after.commits - before.commits == 2  # the gate's batch, then all nine together
    assert after.largest_batch == 9
    assert isinstance(outcomes["dup"], CompanyExists)
    assert isinstance(outcomes["boom"], RuntimeError)
    assert isinstance(outcomes["bad_sql"], StoreUnavailable)
    assert isinstance(outcomes["bad_sql"].__cause__, sqlite3.OperationalError)
    assert await db.get_company_by_name("ghost") is None
    assert await db.get_company_by_name("beta") is not None
    assert (await db.count_by_status(company.id))[JobStatus.QUEUED] == 5


async def test_a_cancelled_write_still_commits_and_reports(db: SqliteStore) -> None:
    company = await db.create_company("acme", T0)
    gate = WriterGate()
    got = []

    async def submit(task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            got.append(await db.insert_jobs([new_job(company.id)], T0))

    async with trio.open_nursery() as nursery:
        await gate.hold(db, nursery)
        scope = await nursery.start(submit)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()  # lands while the request waits behind the gate
        await trio.testing.wait_all_tasks_blocked()
        gate.release.set()
    [[inserted]] = got
    assert inserted.created and inserted.event is not None
    assert await db.get_job(inserted.job.id) == inserted.job
    assert await db.last_event_id() == inserted.event.id
    [again] = await db.insert_jobs([new_job(company.id)], T0)  # still usable
    assert again.created


async def test_a_cancelled_read_interrupts_its_query(db: SqliteStore) -> None:
    def endless(conn: sqlite3.Connection) -> None:
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 1000000000) "
            "SELECT count(*) FROM n"
        ).fetchone()

    started = time.monotonic()
    with trio.move_on_after(0.2) as scope:
        await db._read(endless)
    assert scope.cancelled_caught
    assert time.monotonic() - started < 5
    await db.ping()
    assert await db.list_companies() == []


async def test_aclose_stops_the_writer(tmp_path) -> None:
    store = SqliteStore(tmp_path / "callboard.db")
    await store.open()
    thread = store._writer._thread
    assert thread is not None and thread.is_alive()
    await store.aclose()
    assert not thread.is_alive()
    with pytest.raises(StoreUnavailable):
        await store.create_company("acme", T0)
    with pytest.raises(StoreUnavailable):
        await store.list_companies()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.aclose()


async def test_writes_queued_before_aclose_all_commit(tmp_path) -> None:
    path = tmp_path / "callboard.db"
    store = SqliteStore(path)
    await store.open()
    company = await store.create_company("acme", T0)
    gate = WriterGate()
    results = []

    async def insert() -> None:
        results.append(await store.insert_jobs([new_job(company.id)], T0))

    async with trio.open_nursery() as nursery:
        await gate.hold(store, nursery)
        for _ in range(10):
            nursery.start_soon(insert)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(store.aclose)
        await trio.testing.wait_all_tasks_blocked()
        gate.release.set()
    assert len(results) == 10
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert (await reopened.count_by_status())[JobStatus.QUEUED] == 10
    finally:
        await reopened.aclose()


# --- performance-minded paths (claim by index, event snapshots, checkpointer) ----------


async def test_claim_seeks_each_company_and_type_in_the_fair_index(db: SqliteStore) -> None:
    # Guards the claim's cost: one index seek per company and job type, not a sort of
    # every queued job (which made each claim O(queue) and the writer the bottleneck).
    conn = sqlite3.connect(db.path)
    try:
        params = {
            "now": "2030-01-01T00:00:00.000000Z",
            "limit": 4,
            "type_caps": '{"noop": null}',
            "lease_owner": "w",
            "lease_expires_at": "2030-01-01T00:01:00.000000Z",
        }
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + Q["claim_order"], params)]
    finally:
        conn.close()
    fair_seek = "USING INDEX content_jobs_fair (company_id=? AND job_type=?)"
    assert any(fair_seek in step for step in plan), plan
    # Running jobs are counted from their own small index, never a walk of every job.
    scans = [step for step in plan if step.startswith("SCAN content_jobs")]
    assert all("content_jobs_running_company" in step for step in scans), plan


async def test_asset_lists_seek_their_index(db: SqliteStore) -> None:
    # A task's assets come from the source-task index, not a walk of the company's.
    conn = sqlite3.connect(db.path)
    params = {
        "company_id": "c",
        "source_task_id": "task-7",
        "created_by_job_id": None,
        "after_created_at": None,
        "after_id": None,
        "limit": 51,
    }

    def plan(name: str, params: dict) -> str:
        return " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + Q[name], params))

    try:
        company = plan("list_assets", params)
        task = plan("list_assets_of_task", params)
        keys = plan("existing_asset_keys", {"object_keys": '["a"]'})
    finally:
        conn.close()
    assert "USING INDEX assets_company_created (company_id=?)" in company
    assert "USING INDEX assets_source_task (company_id=? AND source_task_id=?)" in task
    assert "(object_key=?)" in keys  # the UNIQUE constraint's index, once per key


async def test_claim_and_renewal_look_jobs_up_by_key(db: SqliteStore) -> None:
    # Without statistics the planner read every queued (running) job through
    # content_jobs_status and tested each against the ids: each claim cost O(queue).
    conn = sqlite3.connect(db.path)
    params = {"now": "t", "lease_owner": "w", "lease_expires_at": "t", "ids": '["a"]'}
    try:
        for name, ids in (("claim", "ids"), ("renew_leases", "job_ids")):
            plan = [
                row[3]
                for row in conn.execute("EXPLAIN QUERY PLAN " + Q[name], {**params, ids: "[]"})
            ]
            assert any("sqlite_autoindex_content_jobs_1 (id=?)" in step for step in plan), plan
        plan = " ".join(
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN " + Q["prunable_jobs"], {"before": "t", "limit": 1}
            )
        )
        assert "content_jobs_finished (finished_at<?)" in plan
    finally:
        conn.close()


def _opcodes(conn: sqlite3.Connection, name: str) -> list[str]:
    """The bytecode of statement `name`, its parameters all NULL."""
    params = dict.fromkeys(re.findall(r":(\w+)", Q[name]))
    return [row[1] for row in conn.execute("EXPLAIN " + Q[name], params)]


async def test_job_writes_build_no_temporary_tables(db: SqliteStore) -> None:
    # SQLite builds a temporary b-tree for RETURNING and for an IN list of three values
    # or more, each time the statement runs; the per-job writes need neither.
    conn = sqlite3.connect(db.path)
    conn.execute("PRAGMA foreign_keys = ON")
    names = ("insert_job", "insert_running_job", "insert_event", "record_progress")
    names += ("complete", "fail_final", "fail_retry", "mark_cancelled", "retry")
    try:
        for name in names:
            assert "OpenEphemeral" not in _opcodes(conn, name), name
    finally:
        conn.close()


async def test_the_built_queued_row_equals_the_stored_one(db: SqliteStore) -> None:
    from callboard.store.sqlite.store import ROWS, _new_job_row, _queued_row

    company = await db.create_company("acme", T0)
    plain = new_job(company.id)
    full = new_job(
        company.id,
        input={"a": [1, "é"]},
        priority=-3,
        max_attempts=4,
        timeout_seconds=30,  # an int, stored as REAL
        run_at=datetime(2030, 1, 2, tzinfo=UTC),
        source_task_id="task-1",
        idempotency_key="key-1",
    )
    inserted = await db.insert_jobs([plain, full], T0)
    conn = sqlite3.connect(db.path)
    conn.row_factory = sqlite3.Row
    try:
        for new, item in zip([plain, full], inserted, strict=True):
            row = conn.execute("SELECT * FROM content_jobs WHERE id = ?", (new.id,)).fetchone()
            built = _queued_row(_new_job_row(new, "2030-01-01T00:00:00.000000Z"))
            assert built == dict(row)
            assert [type(v) for v in built.values()] == [type(v) for v in dict(row).values()]
            assert item.job == await db.get_job(new.id)
        # Started on insert: written running at once, the row as `SELECT *` reads it.
        now = datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)
        started = await db.insert_running(
            new_job(company.id, job_type="other", timeout_seconds=7, source_task_id="t"),
            now,
            lease_owner="w",
            lease_expires_at=datetime(2030, 1, 1, 0, 1, tzinfo=UTC),
        )
        assert started is not None
        (inserted_job, running) = started
        row = conn.execute("SELECT * FROM content_jobs WHERE id = ?", (running.id,)).fetchone()
        assert running == await db.get_job(running.id) == ROWS.job(row)
        assert inserted_job.job.status is JobStatus.QUEUED
    finally:
        conn.close()


async def test_migration_9_keeps_the_status_check(tmp_path) -> None:
    # 0009 rewrites content_jobs' stored CHECK text. On a database that holds jobs from
    # before it, the store migrating it writes without temporary tables at once (its
    # own connection re-read the schema), the check still refuses an unknown status,
    # and the file is sound.
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(Q["create_schema_version"])
        for migration in discover("sqlite")[:8]:
            for statement in split_sqlite_script(migration.sql):
                conn.execute(statement)
            conn.execute(
                Q["record_migration"], {"version": migration.version, "name": migration.name}
            )
        conn.execute("INSERT INTO companies (id, name, created_at) VALUES ('c', 'c', 't')")
        conn.execute(
            "INSERT INTO content_jobs (id, company_id, job_type, status, input, run_at,"
            " created_at, updated_at, finished_at) VALUES"
            " ('j', 'c', 'noop', 'done', '{}', 't', 't', 't', 't')"
        )
    finally:
        conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert store.applied_migrations == [9]
        ops = await store._write(lambda conn: _opcodes(conn, "complete"))
        assert "OpenEphemeral" not in ops
    finally:
        await store.aclose()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (text,) = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'content_jobs'")
        assert "status IN" not in text[0] and "status = 'cancelled'" in text[0]
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("UPDATE content_jobs SET status = 'lost' WHERE id = 'j'")
        prunable = conn.execute(Q["count_prunable_jobs"], {"before": "u"}).fetchone()
        assert prunable == (1,)
    finally:
        conn.close()


async def test_claim_matches_a_reference_across_types_caps_and_priorities(
    db: SqliteStore,
) -> None:
    import random

    rng = random.Random(7)
    company = await db.create_company("acme", T0)
    jobs = []
    for batch in range(6):
        new = [
            new_job(
                company.id,
                job_type=rng.choice("abc"),
                priority=rng.choice([-1, 0, 0, 3]),
                run_at=datetime(2030, 1, 1, 0, 0, rng.choice([0, 1, 2, 30]), tzinfo=UTC),
            )
            for _ in range(12)
        ]
        inserted = await db.insert_jobs(new, datetime(2030, 1, 1, 0, 0, 0, batch, tzinfo=UTC))
        jobs.extend(item.job for item in inserted)
    now = datetime(2030, 1, 1, 0, 0, 10, tzinfo=UTC)
    queued = {job.id: (seq, job) for seq, job in enumerate(jobs)}
    for caps, limit in [({"a": 1, "b": None}, 4), ({"a": None, "c": 2}, 5), ({"b": 0}, 3)] * 3:
        due = sorted(
            ((seq, job) for seq, job in queued.values() if job.run_at <= now),
            key=lambda sj: (-sj[1].priority, sj[1].run_at, sj[1].created_at, sj[0]),
        )
        expected, taken_by_type = [], dict.fromkeys(caps, 0)
        for _, job in due:
            cap = caps.get(job.job_type, 0)
            if job.job_type in caps and (cap is None or taken_by_type[job.job_type] < cap):
                taken_by_type[job.job_type] += 1
                expected.append(job.id)
        expected = expected[:limit]
        claimed = await db.claim(
            now=now,
            limit=limit,
            type_caps=caps,
            lease_owner="w",
            lease_expires_at=datetime(2030, 1, 1, 0, 1, tzinfo=UTC),
        )
        assert [job.id for job, _ in claimed] == expected
        for job_id in expected:
            del queued[job_id]


async def test_published_events_equal_the_stored_ones(db: SqliteStore) -> None:
    # The writer builds an event's payload from the row's own time texts and its
    # snapshot without a JSON round trip; both must equal what a reader gets back.
    import json

    company = await db.create_company("acme", T0)
    new = new_job(
        company.id,
        input={"nested": {"list": [1, 2.5, "é", None]}, "flag": True},
        priority=2,
        timeout_seconds=12.5,
        source_task_id="task-1",
        idempotency_key="key-1",
        max_attempts=3,
    )
    [inserted] = await db.insert_jobs([new], T0)
    t1 = datetime(2030, 1, 1, 0, 0, 1, 123456, tzinfo=UTC)
    [(_, running)] = await db.claim(
        now=t1,
        limit=1,
        type_caps={"noop": None},
        lease_owner="w",
        lease_expires_at=datetime(2030, 1, 1, 0, 1, tzinfo=UTC),
    )
    progress = await db.record_progress(new.id, "w", 40, "half-ish", t1)
    done = await db.complete(new.id, "w", datetime(2030, 1, 1, 0, 0, 2, tzinfo=UTC), "asset-9")
    published = [inserted.event, running, progress, done]
    stored = await db.events_after(0, job_id=new.id)
    assert stored == published
    conn = sqlite3.connect(db.path)
    try:
        payloads = [
            json.loads(row[0])
            for row in conn.execute(
                "SELECT payload FROM content_job_events WHERE job_id = ? ORDER BY id", (new.id,)
            )
        ]
    finally:
        conn.close()
    assert payloads == [event.job.to_dict() for event in published]
    assert running.job.lease_owner is None and running.job.input == new.input


async def test_the_checkpointer_checkpoints_after_commits(db: SqliteStore) -> None:
    company = await db.create_company("acme", T0)
    await db.insert_jobs([new_job(company.id) for _ in range(20)], T0)
    for _ in range(3000):  # up to 30 s: a hang guard, not a timing assertion
        if db._checkpointer.checkpoints:
            break
        await trio.sleep(0.01)
    assert db._checkpointer.checkpoints >= 1


async def test_checkpointer_stop_is_not_lost_in_its_interval(tmp_path) -> None:
    from callboard.store.sqlite.writer import Checkpointer

    checkpointer = Checkpointer(
        lambda: sqlite3.connect(tmp_path / "x.db", check_same_thread=False),
        "PRAGMA wal_checkpoint(PASSIVE)",
        interval=3600,
    )
    checkpointer.start()
    checkpointer.poke()  # the thread now waits out its interval
    await trio.sleep(0.05)
    with trio.fail_after(30):  # a hang guard: stop() must not wait for the interval
        await trio.to_thread.run_sync(checkpointer.stop, abandon_on_cancel=True)
