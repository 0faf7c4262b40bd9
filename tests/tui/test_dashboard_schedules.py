"""The dashboard's schedules view against a real `callboard serve` subprocess, driven
by Textual's pilot: s opens it, it lists every schedule with its next run, and it
follows a pause."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable
from tui_server import Server

from callboard.client import AsyncClient, Client
from callboard.tui import DashboardApp
from callboard.tui.schedules import SchedulesScreen

pytestmark = pytest.mark.asyncio

SIZE = (160, 45)


async def until(pilot: Pilot, condition: Callable[[], object], timeout: float = 15.0) -> None:  # noqa: ASYNC109 - a bounded pilot loop
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition(), f"timed out after {timeout}s waiting for {condition}"


def rows(screen: SchedulesScreen) -> dict[str, list[str]]:
    table = screen.query_one(DataTable)
    return {str(key.value): [str(cell) for cell in table.get_row(key)] for key in table.rows}


async def test_schedules_view_shows_next_runs_and_follows_a_pause(
    server: Server, api: Client
) -> None:
    api.create_company("beta")
    nightly = api.create_schedule(
        "nightly", "noop", cron="30 2 * * *", timezone="Europe/Paris", company="acme"
    )
    hourly = api.create_schedule("hourly", "noop", every=3600, company="beta")
    app = DashboardApp(AsyncClient(server.url, server.token))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected" and app.loaded)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen))
        screen = app.screen
        assert isinstance(screen, SchedulesScreen)
        await until(pilot, lambda: len(rows(screen)) == 2)
        shown = rows(screen)
        # Soonest first: the hourly one is due within the hour.
        assert list(shown) == [hourly.id, nightly.id]
        assert shown[hourly.id][:4] == ["beta", "hourly", "noop", "every 3600 s"]
        assert shown[nightly.id][3] == "cron 30 2 * * * (Europe/Paris)"
        assert f"{hourly.next_run_at:%Y-%m-%d %H:%M:%S}Z (in " in shown[hourly.id][4]
        assert shown[nightly.id][6] == "active"
        api.pause_schedule("nightly", company="acme")
        await pilot.press("r")
        await until(pilot, lambda: rows(screen)[nightly.id][6] == "paused")
        assert rows(screen)[nightly.id][4] == "—"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, SchedulesScreen))
