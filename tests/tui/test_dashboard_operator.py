"""The operator's first hour with the dashboard, against a real `callboard serve`
subprocess, driven by Textual's pilot: a retried job's whole history, an event log
that keeps scrolling, and a table that shows what is new after a search."""

from __future__ import annotations

import pytest
from textual.widgets import Input
from tui_kit import (
    SIZE,
    app_for,
    row_order,
    screen_text,
    status_in_table,
    table,
    until,
    visible_rows,
)
from tui_server import Server

from callboard.client import Client
from callboard.jobs import JobSpec
from callboard.tui.dialogs import ConfirmScreen, FilterScreen, SearchScreen
from callboard.tui.screens import JobDetailScreen
from callboard.tui.widgets import EventLog

pytestmark = pytest.mark.asyncio


async def test_detail_lists_every_attempt_of_a_retried_job(server: Server, api: Client) -> None:
    job_id = api.submit("acme", "flaky", max_attempts=1).job_id
    assert api.wait(job_id, timeout=30).status == "failed"
    api.retry(job_id)
    assert api.wait(job_id, timeout=30).status == "done"
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and status_in_table(app, job_id) == "done")
        table(app).move_cursor(row=table(app).get_row_index(job_id))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        await until(pilot, lambda: detail.job is not None)
        kinds = [str(e.type).removeprefix("content_job.") for e in detail.history]
        assert kinds == ["queued", "running", "failed", "queued", "running", "done"]
        await pilot.pause()
        text = screen_text(app)
        assert "the first attempt always fails" in text  # the first attempt's event row
        assert text.count("running") >= 2


async def test_event_log_keeps_scrolling_past_its_line_limit(server: Server, api: Client) -> None:
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected" and app.loaded)
        log = app.main.query_one(EventLog)
        assert log.max_lines is not None
        # Three events a job (queued, running, done): well past the log's limit.
        count = log.max_lines // 3 + 40
        ids = [s.job_id for s in api.submit_many("acme", [JobSpec("noop")] * count)]
        await until(pilot, lambda: all(status_in_table(app, i) == "done" for i in ids))
        await until(pilot, lambda: log.line_count == log.max_lines)
        last = app.model.log[-1]
        await pilot.pause(0.5)
        assert last in screen_text(app)
        # And again, once it is full.
        more = api.submit("acme", "noop").job_id
        await until(pilot, lambda: status_in_table(app, more) == "done")
        await until(pilot, lambda: app.model.log[-1] != last and "done" in app.model.log[-1])
        await pilot.pause(0.5)
        assert app.model.log[-1] in screen_text(app)


async def _many_done(api: Client, count: int) -> list[str]:
    ids = [s.job_id for s in api.submit_many("acme", [JobSpec("noop")] * count)]
    for job_id in ids:
        api.wait(job_id, timeout=30)
    return ids


async def test_clearing_a_search_shows_the_newest_jobs_again(server: Server, api: Client) -> None:
    old = api.submit("acme", "noop", source_task_id="needle").job_id
    api.wait(old, timeout=30)
    await _many_done(api, 80)
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and len(row_order(app)) == 81)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press(*"needle", "enter")
        await until(pilot, lambda: row_order(app) == [old])
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, SearchScreen))
        app.screen.query_one(Input).value = ""
        await pilot.press("enter")
        await until(pilot, lambda: len(row_order(app)) == 81)
        assert table(app).cursor_row == 0  # at the newest, not still at the old match
        running = api.submit("acme", "demo.sleep", {"seconds": 30}).job_id
        await until(pilot, lambda: status_in_table(app, running) == "running")
        await pilot.pause(0.3)
        assert row_order(app)[0] == running
        assert running in visible_rows(app)
        api.cancel(running)


async def test_home_jumps_to_the_newest_job(server: Server, api: Client) -> None:
    await _many_done(api, 80)  # one submit: they share a creation time
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and len(row_order(app)) == 80)
        newest = row_order(app)[0]
        table(app).move_cursor(row=79)  # down at the oldest
        await until(pilot, lambda: newest not in visible_rows(app))
        await pilot.press("home")
        await until(pilot, lambda: table(app).cursor_row == 0)
        assert newest in visible_rows(app)
        assert table(app).selected_job_id == newest
        await pilot.press("end")
        await until(pilot, lambda: table(app).cursor_row == 79)


async def test_focus_returns_to_the_table_after_each_dialog(server: Server, api: Client) -> None:
    job_id = api.submit("acme", "demo.sleep", {"seconds": 30}).job_id
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and status_in_table(app, job_id) == "running")
        jobs = table(app)
        assert app.focused is jobs
        # The operator clicks around the screen, then opens each dialog and leaves it.
        await pilot.click(EventLog)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)
        assert app.focused is jobs
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await pilot.click("#apply")
        await until(pilot, lambda: app.screen is app.main)
        await pilot.pause()
        assert app.focused is jobs
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#no")
        await until(pilot, lambda: app.screen is app.main)
        await pilot.pause()
        assert app.focused is jobs
        await pilot.press("down", "up")
        assert jobs.cursor_row == 0
    api.cancel(job_id)
