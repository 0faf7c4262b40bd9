"""The actor tree as a whole: supervision, escalation, and what leaves `running()`."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from callboard import SupervisorEscalation
from callboard.store.memory import MemoryStore

pytestmark = pytest.mark.trio


class BrokenClaims(MemoryStore):
    """A store whose claims fail, as a bug in a store would."""

    def __init__(self) -> None:
        super().__init__()
        self.claim_calls = 0

    async def claim(self, **kwargs):
        self.claim_calls += 1
        raise RuntimeError("claim exploded")


async def test_a_crashing_dispatcher_is_restarted_then_escalates(make_board, autojump_clock):
    store = BrokenClaims()
    board = make_board(store=store)
    with pytest.raises(SupervisorEscalation) as caught:
        async with board.running() as rt:
            company = await rt.create_company("acme")
            await rt.submit(company.id, "noop")
            await trio.sleep_forever()
    assert caught.value.child == "dispatcher"
    assert isinstance(caught.value.error, RuntimeError)
    assert store.claim_calls == 6  # the first run and five restarts


async def test_the_callers_own_exception_comes_out_bare(make_board, autojump_clock):
    with pytest.raises(KeyError, match="mine"):
        async with make_board().running():
            raise KeyError("mine")


async def test_statistics_describe_the_tree(make_board, autojump_clock):
    async with make_board(workers=3).running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(company.id, "noop")
        await rt.wait(job.id)
        await trio.testing.wait_all_tasks_blocked()  # the worker has gone idle again
        stats = rt.statistics()
    assert [c.name for c in stats.supervisor.children] == [
        "watchdog",
        "presence",
        "broker",
        "reaper",
        "leases",
        "workers",
        "dispatcher",
        "scheduler",
        "stats",
    ]
    assert [w.name for w in stats.workers] == ["worker-1", "worker-2", "worker-3"]
    assert sum(w.completed for w in stats.workers) == 1
    assert stats.dispatcher.dispatched == 1
    assert stats.broker.published == 5  # queued, running, done, worker.busy, worker.idle


async def test_the_reaper_prunes_events_past_the_retention(make_board, autojump_clock):
    board = make_board(event_retention=3600)
    async with board.running() as rt:
        company = await rt.create_company("acme")
        old = await rt.submit(company.id, "noop")
        await rt.wait(old.id)
        await trio.sleep(2 * 3600)  # the reaper prunes about hourly
        new = await rt.submit(company.id, "noop")
        await rt.wait(new.id)
        kept = [(e.job_id, str(e.type)) for e in await rt.store.events_after(0)]
        assert rt.statistics().reaper.pruned == 2
    assert kept == [
        (old.id, "content_job.done"),
        (new.id, "content_job.queued"),
        (new.id, "content_job.running"),
        (new.id, "content_job.done"),
    ]


async def test_the_reaper_deletes_finished_jobs_past_the_job_retention(make_board, autojump_clock):
    board = make_board(job_retention=3600, event_retention=None)
    async with board.running() as rt:
        company = await rt.create_company("acme")
        old = await rt.submit(company.id, "noop")
        await rt.wait(old.id)
        waiting = await rt.submit(company.id, "noop", delay=4 * 3600)  # old, not finished
        await trio.sleep(2 * 3600)  # the reaper prunes about hourly
        new = await rt.submit(company.id, "noop")
        await rt.wait(new.id)
        assert await rt.store.get_job(old.id) is None
        assert await rt.store.events_after(0, job_id=old.id) == []
        assert (await rt.get(waiting.id)).status == "queued"
        assert (await rt.get(new.id)).status == "done"
        assert rt.statistics().reaper.jobs_pruned == 1


async def test_no_job_retention_keeps_finished_jobs(make_board, autojump_clock):
    async with make_board(job_retention=None).running() as rt:
        company = await rt.create_company("acme")
        old = await rt.submit(company.id, "noop")
        await rt.wait(old.id)
        await trio.sleep(3 * 3600)  # past any retention the other test prunes at
        assert (await rt.get(old.id)).status == "done"
        assert rt.statistics().reaper.jobs_pruned == 0


async def test_the_operator_feed_gets_worker_and_runtime_stats_events(make_board, autojump_clock):
    from callboard.jobs import NodeEvent

    async with make_board(workers=1).running() as rt:
        company = await rt.create_company("acme")
        seen: list = []
        async with rt.broker.subscribe() as feed:
            job = await rt.submit(company.id, "demo.sleep", {"seconds": 3})
            with trio.move_on_after(5):
                async for event in feed:
                    seen.append(event)
    node = [e for e in seen if isinstance(e, NodeEvent)]
    assert [e.type for e in node if e.type.startswith("worker.")] == ["worker.busy", "worker.idle"]
    assert node[0].data == {
        "worker": "worker-1",
        "jobId": job.id,
        "jobType": "demo.sleep",
        "companyId": company.id,
    }
    stats = [e.data for e in node if e.type == "runtime.stats"]
    assert 3 <= len(stats) <= 6  # one a second
    assert stats[0]["counts"]["running"] == 1 and stats[0]["workers"] == {"total": 1, "busy": 1}
    assert stats[-1]["counts"]["done"] == 1 and stats[-1]["workers"]["busy"] == 0
