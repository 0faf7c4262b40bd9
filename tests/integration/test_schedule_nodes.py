"""Two nodes on one PostgreSQL database, in real time, both running the same
schedules: each tick makes exactly one job, however the nodes race for it."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import trio

import callboard

pytestmark = pytest.mark.trio


def node(pg_url: str, tmp_path, name: str) -> callboard.Board:
    board = callboard.Board(
        database_url=pg_url, workers=2, storage_dir=tmp_path / name, poll_interval=0.5
    )
    # Declared on both nodes: both know of it from the start and race for every tick.
    board.schedule("pulse", company="acme", job_type="noop", every=1)
    board.schedule("minutely", company="acme", job_type="noop", cron="* * * * *")
    return board


async def test_two_nodes_make_one_job_per_tick(pg_url, tmp_path):
    async with (
        node(pg_url, tmp_path, "a").running() as rt_a,
        node(pg_url, tmp_path, "b").running() as rt_b,
    ):
        company = await rt_a.get_company_by_name("acme")
        assert company is not None
        # A third, made on one node while both run.
        extra = await rt_b.create_schedule(company.id, "extra", "noop", every=1)
        await trio.sleep(6.5)
        jobs = (await rt_a.list(company.id, limit=500)).items
        schedules = {s.name: s for s in (await rt_a.schedules(company.id)).items}
        made = [rt._scheduler.statistics().made for rt in (rt_a, rt_b)]
    by_schedule: dict[str, list] = {}
    for job in jobs:
        assert job.schedule_id is not None
        by_schedule.setdefault(job.schedule_id, []).append(job.scheduled_for)
    for schedule_id in (schedules["pulse"].id, extra.id):
        ticks = sorted(by_schedule[schedule_id])
        # One job per tick, none missed: consecutive ticks a second apart.
        assert len(ticks) >= 5
        assert len(set(ticks)) == len(ticks)
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    minutely = by_schedule.get(schedules["minutely"].id, [])
    assert len(minutely) == len(set(minutely)) <= 1
    # Every job made was counted by exactly one node's scheduler.
    assert sum(made) == len(jobs)
