"""What the operator can ask the dashboard's job table for, against a real `callboard
serve` subprocess, driven by Textual's pilot: sort orders (keys and header clicks),
running jobs first, following the newest job, the error column, several statuses at
once, a message when nothing matches, delayed jobs' countdown, the result and error
in the detail screen, and the keys' help."""

from __future__ import annotations

import pytest
from textual.widgets import SelectionList, Static
from tui_kit import SIZE, app_for, row_order, screen_text, status_in_table, table, until
from tui_server import Server

from callboard.client import Client
from callboard.jobs import JobSpec
from callboard.tui.cells import STATUS_ORDER
from callboard.tui.dialogs import FilterScreen, HelpScreen, SearchScreen
from callboard.tui.screens import JobDetailScreen
from callboard.tui.widgets import ConnectionHeader

pytestmark = pytest.mark.asyncio


def header(app) -> str:
    return str(app.main.query_one(ConnectionHeader).render())


def column(app, key: str) -> list[str]:
    jobs = table(app)
    return [str(jobs.get_cell(job_id, key)) for job_id in row_order(app)]


async def test_sort_keys_header_clicks_and_running_first(server: Server, api: Client) -> None:
    running = api.submit("acme", "demo.sleep", {"seconds": 60}).job_id
    failed = api.submit("acme", "demo.fail", {"message": "boom"}).job_id
    api.wait(failed, timeout=30)
    done = [s.job_id for s in api.submit_many("acme", [JobSpec("noop")] * 3)]
    for job_id in done:
        api.wait(job_id, timeout=30)
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and status_in_table(app, running) == "running")
        assert row_order(app)[0] in done  # newest first by default (one submit: ties)
        assert "newest first" in header(app)

        await pilot.press("o")  # age -> status
        await until(pilot, lambda: "sorted: status ▲" in header(app))
        ranks = [STATUS_ORDER[s] for s in column(app, "status")]
        assert ranks == sorted(ranks) and row_order(app)[0] == running
        await pilot.press("O")
        await until(pilot, lambda: "sorted: status ▼" in header(app))
        assert row_order(app)[0] == failed and row_order(app)[-1] == running

        # A click on a column header sorts by it, a second click reverses it.
        type_x = 10 + 12 + 3  # past id and company (each 1 cell of padding a side)
        await pilot.click(table(app), offset=(type_x, 0))
        await until(pilot, lambda: "sorted: type ▲" in header(app))
        assert column(app, "type") == sorted(column(app, "type"))
        await pilot.click(table(app), offset=(type_x, 0))
        await until(pilot, lambda: "sorted: type ▼" in header(app))
        assert column(app, "type") == sorted(column(app, "type"), reverse=True)

        # Running first, whatever the sort and its direction: the oldest job tops it.
        await pilot.press("u")
        await until(pilot, lambda: "running first" in header(app))
        assert row_order(app)[0] == running
        for _ in range(4):  # type -> progress, try, took, age: newest first
            await pilot.press("o")
        await until(pilot, lambda: "running first, newest first" in header(app))
        assert row_order(app)[0] == running and row_order(app)[1] in done
        await pilot.press("u")
        await until(pilot, lambda: row_order(app)[0] in done)
    api.cancel(running)


async def test_follow_keeps_the_cursor_on_the_newest_job(server: Server, api: Client) -> None:
    first = [api.submit("acme", "noop").job_id for _ in range(3)]
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and all(status_in_table(app, i) for i in first))
        jobs = table(app)
        await pilot.press("o", "o", "o")  # by company: the newest is not row 0 by rule
        await pilot.press("down", "down")
        await pilot.press("n")
        await until(pilot, lambda: "FOLLOWING NEWEST" in header(app))
        assert jobs.selected_job_id == first[-1]
        for _ in range(3):
            newest = api.submit("acme", "noop").job_id
            await until(pilot, lambda newest=newest: jobs.selected_job_id == newest)
        # Moving to another job stops following.
        await pilot.press(*"ooooo")  # back round to age: newest first
        await until(pilot, lambda: "newest first" in header(app))
        assert jobs.selected_job_id == newest
        await pilot.press("down")
        await until(pilot, lambda: "FOLLOWING" not in header(app))
        kept = jobs.selected_job_id
        later = api.submit("acme", "noop").job_id
        await until(pilot, lambda: status_in_table(app, later) == "done")
        assert jobs.selected_job_id == kept


async def test_error_column_and_several_statuses_and_nothing_matches(
    server: Server, api: Client
) -> None:
    ok = api.submit("acme", "noop").job_id
    bad = api.submit("acme", "demo.fail", {"message": "boom\nsecond line"}).job_id
    slow = api.submit("acme", "demo.sleep", {"seconds": 60}).job_id
    api.wait(ok, timeout=30)
    api.wait(bad, timeout=30)
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and status_in_table(app, slow) == "running")
        jobs = table(app)
        assert str(jobs.get_cell(bad, "error")) == "RuntimeError: boom second line"
        assert str(jobs.get_cell(ok, "error")) == ""
        await pilot.pause()
        shown = screen_text(app)  # on screen in 160 columns, up to the last column
        assert "RuntimeError: boom" in shown and " took " in shown

        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        statuses = app.screen.query_one("#status", SelectionList)
        statuses.select("failed")
        statuses.select("done")
        await pilot.click("#apply")
        await until(pilot, lambda: set(row_order(app)) == {ok, bad})
        assert "status=done,failed" in header(app)

        empty = app.main.query_one("#empty", Static)
        assert not empty.has_class("-visible")
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press(*"no-such-job", "enter")
        await until(pilot, lambda: row_order(app) == [])
        await pilot.pause()
        assert empty.has_class("-visible")
        assert "No job matches status=done,failed search=no-such-job" in screen_text(app)
        await pilot.press("escape")  # clears filter and search
        await until(pilot, lambda: set(row_order(app)) == {ok, bad, slow})
        assert not empty.has_class("-visible")
        assert "showing: all jobs" in header(app)
    api.cancel(slow)


async def test_delayed_job_says_when_it_runs(server: Server, api: Client) -> None:
    later = api.submit("acme", "noop", delay=300).job_id
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and status_in_table(app, later) == "queued")
        cell = str(table(app).get_cell(later, "progress"))
        assert cell.startswith(("⏲ in 4m5", "⏲ in 5m00s")), cell
        assert cell.endswith(")") and cell.count(":") == 2  # (HH:MM:SS)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        detail = app.screen
        await until(pilot, lambda: detail.job is not None)
        await pilot.pause()
        assert "⏲ in 4m5" in screen_text(app) or "⏲ in 5m00s" in screen_text(app)
    api.cancel(later)


async def test_detail_shows_result_and_error(server: Server, api: Client) -> None:
    job_id = api.submit("acme", "flaky", max_attempts=1).job_id
    assert api.wait(job_id, timeout=30).status == "failed"
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded and status_in_table(app, job_id) == "failed")
        assert "the first attempt always fails" in str(table(app).get_cell(job_id, "error"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        detail = app.screen
        await until(pilot, lambda: detail.job is not None)
        await pilot.pause()
        text = screen_text(app)
        assert "Result" in text and "Error" in text
        assert "the first attempt always fails" in text
        # Retried from the detail's point of view: r reloads it once done.
        api.retry(job_id)
        assert api.wait(job_id, timeout=30).status == "done"
        await pilot.press("r")
        await until(pilot, lambda: detail.job is not None and detail.job.status == "done")
        await pilot.pause()
        text = screen_text(app)
        assert '"attempt": 2' in text and '"pages"' in text


async def test_help_lists_the_keys(server: Server, api: Client) -> None:
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()
        text = screen_text(app)
        for phrase in ("running jobs first", "follow the newest", "reverse the sort"):
            assert phrase in text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)
        assert app.focused is table(app)
