"""The schedules view: every schedule the token sees, with its timing and its next
run (s on the dashboard opens it; r reloads; it reloads itself every few seconds)."""

from __future__ import annotations

from datetime import UTC, datetime

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..client import AsyncClient, ClientError, Schedule

REFRESH_SECONDS = 5.0
COLUMNS = ("company", "name", "job type", "timing", "next run", "last run", "state")


def timing(schedule: Schedule) -> str:
    if schedule.cron is not None:
        return f"cron {schedule.cron} ({schedule.timezone})"
    return f"every {schedule.every:g} s"


def when(moment: datetime | None, now: datetime) -> str:
    """A time as UTC, with how far it is from now (`in 4m 10s`, `3s ago`)."""
    if moment is None:
        return "—"
    seconds = int((moment - now).total_seconds())
    span = abs(seconds)
    hours, rest = divmod(span, 3600)
    minutes, secs = divmod(rest, 60)
    parts = (f"{hours}h " if hours else "") + (f"{minutes}m " if hours or minutes else "")
    distance = f"{parts}{secs}s"
    relative = f"in {distance}" if seconds >= 0 else f"{distance} ago"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({relative})"


class SchedulesScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,backspace,s", "app.pop_screen", "back"),
        Binding("r", "reload", "reload"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, client: AsyncClient) -> None:
        super().__init__()
        self.client = client
        #: What is shown, once loaded: (company name, schedule).
        self.shown: list[tuple[str, Schedule]] = []

    def compose(self) -> ComposeResult:
        yield Static("schedules: loading…", id="schedules-title")
        yield DataTable(id="schedules", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.action_reload()
        self.set_interval(REFRESH_SECONDS, self.action_reload)

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True)
    async def load(self) -> None:
        try:
            companies = await self.client.companies()
            found = [
                (company["name"], schedule)
                for company in companies
                for schedule in await self.client.schedules(company["id"])
            ]
        except ClientError as exc:
            self.query_one("#schedules-title", Static).update(f"schedules: {exc.message}")
            return
        self.show(found, datetime.now(UTC))

    def show(self, found: list[tuple[str, Schedule]], now: datetime) -> None:
        # Soonest first; paused ones last.
        found.sort(key=lambda item: (item[1].next_run_at is None, item[1].next_run_at or now))
        self.shown = found
        table = self.query_one(DataTable)
        table.clear()
        for company, s in found:
            table.add_row(
                company,
                s.name,
                s.job_type,
                timing(s),
                when(s.next_run_at, now),
                when(s.last_run_at, now),
                "paused" if s.paused else "active",
                key=s.id,
            )
        self.query_one("#schedules-title", Static).update(
            f"schedules: {len(found)} (next run first; r reloads, s or Esc goes back)"
        )
