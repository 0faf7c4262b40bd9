"""Group commit of submits: concurrent submits share one write, and each still gets
its own answer (its jobs, or its own error), whoever is cancelled."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
import trio
import trio.lowlevel

from callboard.actors.grouped_insert import MAX_JOBS, GroupedInsert
from callboard.errors import CompanyNotFound, StoreUnavailable
from callboard.jobs import Inserted, NewJob, new_id
from callboard.store.memory import MemoryStore

pytestmark = pytest.mark.trio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def job(company_id: str, key: str | None = None) -> NewJob:
    return NewJob(
        id=new_id(),
        company_id=company_id,
        job_type="noop",
        input={},
        priority=0,
        max_attempts=1,
        timeout_seconds=None,
        run_at=T0,
        source_task_id=None,
        idempotency_key=key,
    )


class GatedStore:
    """The memory store's insert_jobs; each write waits at a gate of its own, which
    the test opens, and records its size."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.gates: list[trio.Event] = []
        self.writes: list[int] = []
        self.fail_with: Exception | None = None

    @property
    def gate(self) -> trio.Event:
        """The gate of the latest write."""
        return self.gates[-1]

    async def insert_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[Inserted]:
        self.writes.append(len(jobs))
        gate = trio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return await self.store.insert_jobs(jobs, now)

    async def write_started(self, count: int) -> None:
        """Wait until `count` writes have begun."""
        while len(self.writes) < count:
            await trio.lowlevel.checkpoint()

    async def open_all(self) -> None:
        """Open every gate, as writes come, until all tasks are blocked elsewhere."""
        while True:
            await trio.testing.wait_all_tasks_blocked()
            closed = [gate for gate in self.gates if not gate.is_set()]
            if not closed:
                return
            for gate in closed:
                gate.set()


@pytest.fixture
async def gated():
    gated = GatedStore()
    async with gated.store.opened():
        yield gated


async def test_submits_during_a_write_share_the_next_one(gated):
    company = (await gated.store.create_company("acme", T0)).id
    grouped = GroupedInsert(gated.insert_jobs, lambda: T0, writers=1)
    answers: dict[int, list[Inserted]] = {}

    async def submit(index: int, count: int) -> None:
        answers[index] = await grouped.insert([job(company) for _ in range(count)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, 0, 1)
        await gated.write_started(1)  # the first write is in flight
        for index in range(1, 6):
            nursery.start_soon(submit, index, index)
        await gated.open_all()
    # The first alone, then the five that waited in one write.
    assert gated.writes == [1, 1 + 2 + 3 + 4 + 5]
    assert grouped.writes == 2 and grouped.jobs_written == 16
    for index, inserted in answers.items():
        assert len(inserted) == max(index, 1)
        assert all(item.created for item in inserted)
    every = [item.job.id for inserted in answers.values() for item in inserted]
    assert len(set(every)) == 16
    assert len((await gated.store.list_jobs(company, limit=100)).items) == 16


async def test_a_group_never_exceeds_the_cap_and_keeps_each_submit_whole(gated):
    company = (await gated.store.create_company("acme", T0)).id
    grouped = GroupedInsert(gated.insert_jobs, lambda: T0, writers=1)
    big = MAX_JOBS // 2 + 1
    async with trio.open_nursery() as nursery:
        nursery.start_soon(grouped.insert, [job(company)])
        await gated.write_started(1)
        for _ in range(3):
            nursery.start_soon(grouped.insert, [job(company) for _ in range(big)])
        await gated.open_all()
    assert gated.writes == [1, big, big, big]


async def test_a_refusal_reaches_only_the_submit_it_belongs_to(gated):
    company = (await gated.store.create_company("acme", T0)).id
    grouped = GroupedInsert(gated.insert_jobs, lambda: T0, writers=1)
    results: dict[str, object] = {}

    async def submit(name: str, company_id: str) -> None:
        try:
            results[name] = await grouped.insert([job(company_id), job(company_id)])
        except CompanyNotFound as exc:
            results[name] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, "first", company)
        await gated.write_started(1)
        nursery.start_soon(submit, "good", company)
        nursery.start_soon(submit, "unknown", new_id())
        nursery.start_soon(submit, "also good", company)
        await gated.open_all()
    assert isinstance(results["unknown"], CompanyNotFound)
    for name in ("first", "good", "also good"):
        assert [item.created for item in results[name]] == [True, True]  # type: ignore[union-attr]
    # Nothing of the refused submit was written, all of the others.
    assert len((await gated.store.list_jobs(None, limit=100)).items) == 6


async def test_an_outage_fails_every_submit_of_the_write(gated):
    company = (await gated.store.create_company("acme", T0)).id
    grouped = GroupedInsert(gated.insert_jobs, lambda: T0, writers=1)
    errors: list[Exception] = []

    async def submit() -> None:
        try:
            await grouped.insert([job(company)])
        except StoreUnavailable as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit)
        await gated.write_started(1)
        for _ in range(3):
            nursery.start_soon(submit)
        gated.fail_with = StoreUnavailable("down")
        await gated.open_all()
    assert len(errors) == 4
    assert gated.writes == [1, 3]  # not retried one by one: none of them was written


async def test_cancelling_the_writer_does_not_cancel_the_write_it_carries(gated):
    company = (await gated.store.create_company("acme", T0)).id
    grouped = GroupedInsert(gated.insert_jobs, lambda: T0, writers=1)
    answers: list[list[Inserted]] = []
    own: list[list[Inserted]] = []

    async def writer(task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            # Cancelled while its write is in flight, it still gets the answer: the
            # write went through, so the submit happened.
            own.append(await grouped.insert([job(company)]))

    async def rider() -> None:
        answers.append(await grouped.insert([job(company)]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(grouped.insert, [job(company)])
        await gated.write_started(1)
        # `writer` queues first, so it makes the next write, carrying the riders.
        scope = await nursery.start(writer)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(rider)
        nursery.start_soon(rider)
        await trio.testing.wait_all_tasks_blocked()
        gated.gate.set()
        await gated.write_started(2)
        scope.cancel()  # while its write (with the riders' jobs) is in flight
        await trio.testing.wait_all_tasks_blocked()
        gated.gate.set()
    assert gated.writes == [1, 3]
    assert len(own) == 1 and own[0][0].created
    assert len(answers) == 2 and all(a[0].created for a in answers)
    assert len((await gated.store.list_jobs(company, limit=100)).items) == 4


async def test_a_submit_cancelled_while_it_waits_writes_nothing(gated, autojump_clock):
    company = (await gated.store.create_company("acme", T0)).id
    grouped = GroupedInsert(gated.insert_jobs, lambda: T0, writers=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(grouped.insert, [job(company)])
        await gated.write_started(1)
        with trio.move_on_after(1):
            await grouped.insert([job(company), job(company)])
        await gated.open_all()
    assert gated.writes == [1]
    assert len((await gated.store.list_jobs(company, limit=100)).items) == 1


async def test_with_two_writers_a_submit_taken_by_the_other_write_waits_for_it(gated):
    company = (await gated.store.create_company("acme", T0)).id
    grouped = GroupedInsert(gated.insert_jobs, lambda: T0, writers=2)
    answers: dict[str, list[Inserted]] = {}

    async def submit(name: str) -> None:
        answers[name] = await grouped.insert([job(company)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, "a")
        await gated.write_started(1)
        nursery.start_soon(submit, "b")  # the second writer: written alone at once
        await gated.write_started(2)
        nursery.start_soon(submit, "c")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(submit, "d")
        await trio.testing.wait_all_tasks_blocked()
        gated.gates[0].set()  # "a" done: its slot goes to "c", which takes "d" along
        await gated.write_started(3)
        await trio.testing.wait_all_tasks_blocked()
        gated.gates[1].set()  # "b" done: its slot goes to "d", already taken
        await trio.testing.wait_all_tasks_blocked()
        assert set(answers) == {"a", "b"}  # "d" waits for the write that carries it
        gated.gates[2].set()
    assert gated.writes == [1, 1, 2]
    assert all(answers[name][0].created for name in "abcd")
    assert len({answers[name][0].job.id for name in "abcd"}) == 4
