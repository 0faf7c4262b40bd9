"""The dashboard against a real `callboard serve` subprocess, driven by Textual's pilot.

Scene-setting calls use the sync client: they block the app's event loop for a moment,
which the reconnect test relies on (nothing can reconnect while it submits)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import SelectionList
from tui_server import Server, free_port

from callboard.client import AsyncClient, Client
from callboard.tui import DashboardApp
from callboard.tui.dialogs import FilterScreen, SearchScreen
from callboard.tui.screens import JobDetailScreen
from callboard.tui.widgets import ConnectionHeader, JobTable

pytestmark = pytest.mark.asyncio

SIZE = (160, 45)
ARTIFACTS = Path(os.environ.get("CALLBOARD_ARTIFACTS") or tempfile.gettempdir()) / (
    "callboard-tui-artifacts"
)


async def until(pilot: Pilot, condition: Callable[[], object], timeout: float = 15.0) -> None:  # noqa: ASYNC109 - a bounded pilot loop
    """Let the app run until `condition()` holds, or fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition(), f"timed out after {timeout}s waiting for {condition}"


def app_for(server: Server, token: str | None = None) -> DashboardApp:
    return DashboardApp(AsyncClient(server.url, token or server.token))


def status_in_table(app: DashboardApp, job_id: str) -> str | None:
    table = app.main.query_one(JobTable)
    if job_id not in table.rows:
        return None
    return str(table.get_cell(job_id, "status"))


def shown_ids(app: DashboardApp) -> set[str]:
    return {str(key.value) for key in app.main.query_one(JobTable).rows}


async def test_jobs_appear_move_and_show_progress(server: Server, api: Client) -> None:
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected" and app.loaded)
        ids = [api.submit("acme", "demo.sleep", {"seconds": 1.5}).job_id for _ in range(3)]
        await until(pilot, lambda: all(status_in_table(app, i) for i in ids))
        await until(
            pilot,
            lambda: any(app.model.jobs[i].progress.percent > 0 for i in ids),
        )
        progress = {
            str(app.main.query_one(JobTable).get_cell(i, "progress"))
            for i in ids
            if app.model.jobs[i].status == "running"
        }
        assert any("%" in cell for cell in progress)
        await until(pilot, lambda: all(status_in_table(app, i) == "done" for i in ids))
        assert all(app.model.jobs[i].status == "done" for i in ids)
        seen = {line.split()[1] for line in app.model.log}
        assert {"queued", "running", "progress", "done"} <= seen
        assert app.model.counts["done"] >= 3
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        app.save_screenshot("dashboard-main.svg", str(ARTIFACTS))

        table = app.main.query_one(JobTable)
        table.move_cursor(row=table.get_row_index(ids[0]))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        await until(pilot, lambda: detail.job is not None)
        assert [str(e.type) for e in detail.history][-1] == "content_job.done"
        assert str(detail.history[0].type) == "content_job.queued"
        await pilot.pause()
        svg = app.export_screenshot()
        assert ids[0] in svg
        assert "seconds" in svg
        app.save_screenshot("dashboard-detail.svg", str(ARTIFACTS))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, JobDetailScreen))
    assert (ARTIFACTS / "dashboard-main.svg").stat().st_size > 0
    assert (ARTIFACTS / "dashboard-detail.svg").stat().st_size > 0


async def test_cancel_from_the_dashboard_cancels_on_the_server(server: Server, api: Client) -> None:
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected" and app.loaded)
        job_id = api.submit("acme", "demo.sleep", {"seconds": 60}).job_id
        await until(pilot, lambda: status_in_table(app, job_id) == "running")
        table = app.main.query_one(JobTable)
        table.move_cursor(row=table.get_row_index(job_id))
        await pilot.press("c")
        await pilot.press("y")
        await until(pilot, lambda: status_in_table(app, job_id) == "cancelled")
    assert api.get(job_id).status == "cancelled"


async def test_filter_and_search_hide_what_they_should(server: Server, api: Client) -> None:
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected" and app.loaded)
        ok = api.submit("acme", "noop", source_task_id="task-ok").job_id
        bad = api.submit("acme", "demo.fail", {"message": "boom"}).job_id
        await until(pilot, lambda: status_in_table(app, ok) == "done")
        await until(pilot, lambda: status_in_table(app, bad) == "failed")

        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        app.screen.query_one("#status", SelectionList).select("failed")
        await pilot.click("#apply")
        await until(pilot, lambda: shown_ids(app) == {bad})
        assert "status=failed" in str(app.main.query_one(ConnectionHeader).render())

        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await pilot.click("#clear")
        await until(pilot, lambda: shown_ids(app) == {ok, bad})

        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press(*"task-o", "enter")
        await until(pilot, lambda: shown_ids(app) == {ok})
        # A job arriving while filtered is shown only if it matches.
        other = api.submit("acme", "noop").job_id
        await until(pilot, lambda: other in app.model.jobs)
        await pilot.pause(0.5)
        assert shown_ids(app) == {ok}


async def test_restart_shows_reconnecting_then_catches_up(server: Server, api: Client) -> None:
    app = app_for(server)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected" and app.loaded)
        first = api.submit("acme", "noop").job_id
        await until(pilot, lambda: status_in_table(app, first) == "done")
        server.stop()
        await until(pilot, lambda: app.connection == "reconnecting")
        header = str(app.main.query_one(ConnectionHeader).render())
        assert "reconnecting" in header
        assert "connected" not in header.replace("reconnecting", "")
        # The app's loop is blocked from here to the next pause: these events happen
        # while the dashboard is disconnected, so it must replay them.
        server.start()
        with Client(server.url, server.token) as again:
            missed = [again.submit("acme", "noop").job_id for _ in range(5)]
            for job_id in missed:
                again.wait(job_id, timeout=20)
        assert app.connection == "reconnecting"
        await until(pilot, lambda: app.connection == "connected", timeout=20)
        await until(pilot, lambda: all(status_in_table(app, i) == "done" for i in missed))
        assert len([line for line in app.model.log if " queued " in f" {line} "]) >= 6


async def test_bad_token_shows_the_auth_message(server: Server) -> None:
    app = app_for(server, token="not-a-token")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "auth failed")
        await pilot.pause()
        assert "authorisation failed" in app.export_screenshot().replace("&#160;", " ")
        assert app.main.query_one("#banner").has_class("-visible")
        await pilot.press("q")
    assert app.return_code == 2


async def test_unreachable_server_says_so(tmp_path: Path) -> None:
    app = DashboardApp(AsyncClient(f"http://127.0.0.1:{free_port()}", "token"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "failed")
        assert "cannot reach" in (app.fatal or "")
        await pilot.press("q")
    assert app.return_code == 2


async def test_summary_shows_each_companys_running_and_queued(server: Server, api: Client) -> None:
    from textual.widgets import Static

    from callboard.tui.widgets import Summary

    api.create_company("globex")
    # acme may run 2 at once: the rest of its jobs queue while globex's runs.
    assert api.set_max_running("acme", 2)["maxRunning"] == 2
    for _ in range(5):
        api.submit("acme", "demo.sleep", {"seconds": 30})
    api.submit("globex", "demo.sleep", {"seconds": 30})
    app = app_for(server)

    def summary() -> str:
        return str(app.main.query_one(Summary).query_one("#counts", Static).content)

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected" and app.loaded)
        await until(pilot, lambda: "acme 2 running 3 queued" in summary())
        assert "globex 1 running 0 queued" in summary()
        # The live feed keeps it current: a cancelled job leaves the queue.
        queued = [j for j in api.list("acme") if j.status == "queued"]
        api.cancel(queued[0].id)
        await until(pilot, lambda: "acme 2 running 2 queued" in summary())
