"""What the dashboard's pilot tests share: waiting on a condition while the app runs,
and reading the table and the screen as the operator sees them."""

from __future__ import annotations

import io
from collections.abc import Callable

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from tui_server import Server

from callboard.client import AsyncClient
from callboard.tui import DashboardApp
from callboard.tui.widgets import JobTable

SIZE = (160, 45)


async def until(pilot: Pilot, condition: Callable[[], object], timeout: float = 15.0) -> None:  # noqa: ASYNC109 - a bounded pilot loop
    """Let the app run until `condition()` holds, or fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition(), f"timed out after {timeout}s waiting for {condition}"


def app_for(server: Server, token: str | None = None) -> DashboardApp:
    return DashboardApp(AsyncClient(server.url, token or server.token))


def table(app: DashboardApp) -> JobTable:
    return app.main.query_one(JobTable)


def status_in_table(app: DashboardApp, job_id: str) -> str | None:
    jobs = table(app)
    if job_id not in jobs.rows:
        return None
    return str(jobs.get_cell(job_id, "status"))


def shown_ids(app: DashboardApp) -> set[str]:
    return {str(key.value) for key in table(app).rows}


def row_order(app: DashboardApp) -> list[str]:
    """The job ids of the table's rows, top to bottom."""
    return [str(row.key.value) for row in table(app).ordered_rows]


def visible_rows(app: DashboardApp) -> list[str]:
    """The job ids of the rows scrolled into view."""
    jobs = table(app)
    top = round(jobs.scroll_y)
    height = jobs.scrollable_content_region.height - jobs.header_height
    return row_order(app)[top : top + height]


def screen_text(app: App) -> str:
    """The screen as the terminal shows it now (what the compositor last drew: a
    widget that was not refreshed shows its old lines here too)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()
