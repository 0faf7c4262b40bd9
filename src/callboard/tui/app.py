"""`DashboardApp`: the operator dashboard (README, "The operator dashboard").

It owns the client, the event model and the network workers; the screens draw and post
messages for the network work they need (a reload, company names, a cancel). Flow:
follow `/api/events` (the client reconnects with Last-Event-ID by itself and reports
the connection through `on_state`); once the first connection is up, load the current
jobs through the REST API, so nothing falls between the load and the feed (the model
keeps whichever state of a job is newer). A `stream.gap` reloads.

Errors it cannot recover from (a bad token, an unreachable server at start) end the
feed: the header and a banner say why, and quitting exits with code 2.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive

from ..client import (
    AsyncClient,
    ClientError,
    Forbidden,
    StreamState,
    Unauthorized,
)
from .model import DashboardModel
from .screens import DashboardScreen

EXIT_UNRECOVERABLE = 2
COMPANY_REFRESH_SECONDS = 5.0


class DashboardApp(App[None]):
    CSS_PATH = Path(__file__).with_name("dashboard.tcss")
    TITLE = "callboard"
    BINDINGS = [Binding("q", "quit", "quit")]

    # init=False: the watcher draws on the main screen, which exists only once mounted.
    connection: reactive[str] = reactive("connecting", init=False)

    def __init__(self, client: AsyncClient, *, model: DashboardModel | None = None) -> None:
        super().__init__()
        self.client = client
        self.model = model or DashboardModel()
        self.fatal: str | None = None
        self.loaded = False
        self._companies_at = 0.0

    def get_default_screen(self) -> DashboardScreen:
        return DashboardScreen(self.model, self.client)

    @property
    def main(self) -> DashboardScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, DashboardScreen)
        return screen

    def on_mount(self) -> None:
        self.follow_feed()

    async def on_unmount(self) -> None:
        await self.client.aclose()

    # --- state ----------------------------------------------------------------------

    def watch_connection(self, state: str) -> None:
        detail = ""
        reconnect_at = self.main.reconnect_at
        if state == "reconnecting" and reconnect_at is not None:
            detail = f"in {max(0.0, reconnect_at - time.monotonic()):.0f}s"
        elif state in ("auth failed", "failed"):
            detail = self.fatal or ""
        self.main.show_connection(state, detail)

    def action_quit(self) -> None:
        self.exit(return_code=EXIT_UNRECOVERABLE if self.fatal else 0)

    def _stream_state(self, state: StreamState) -> None:
        """The client's connection reports (called inside `follow_feed`)."""
        if state.state == "reconnecting":
            self.main.reconnect_at = time.monotonic() + (state.retry_in or 0.0)
        else:
            self.main.reconnect_at = None
            if not self.loaded:
                self.load_jobs()
        self.connection = state.state

    def _fail(self, state: str, message: str) -> None:
        self.fatal = message
        self.main.reconnect_at = None  # the banner says why; there is nothing to count down
        self.connection = state
        self.main.show_connection(state, message)  # also when the state was already set

    # --- what the main screen asks for -------------------------------------------------

    def on_dashboard_screen_reload_requested(self, _: DashboardScreen.ReloadRequested) -> None:
        self.load_jobs()

    def on_dashboard_screen_companies_requested(
        self, _: DashboardScreen.CompaniesRequested
    ) -> None:
        self.refresh_companies()

    def on_dashboard_screen_job_action_requested(
        self, message: DashboardScreen.JobActionRequested
    ) -> None:
        self.act(message.job_id, message.action)

    # --- network I/O (Textual workers) ------------------------------------------------

    @work(exclusive=True, group="feed")
    async def follow_feed(self) -> None:
        try:
            async with self.client.events(
                last_event_id=self.model.last_event_id,
                reconnect_for=None,  # keep trying; the header says so
                on_state=self._stream_state,
            ) as events:
                async for event in events:
                    self.model.apply(event)
        except (Unauthorized, Forbidden) as exc:
            self._fail("auth failed", f"authorisation failed: {exc.message}")
        except ClientError as exc:
            self._fail("failed", exc.message)

    @work(exclusive=True, group="load")
    async def load_jobs(self) -> None:
        """The current jobs (newest first, up to the model's bound) and the workers."""
        try:
            await self._load_companies()
            stats = await self.client.stats()
            jobs = []
            async for job in self.client.list(page_size=500):
                jobs.append(job)
                if len(jobs) >= self.model.max_jobs:
                    break
        except (Unauthorized, Forbidden) as exc:
            self._fail("auth failed", f"authorisation failed: {exc.message}")
            return
        except ClientError as exc:
            # The feed will report the connection; this load is retried when it is back.
            self.notify(f"could not load jobs: {exc.message}", severity="error")
            return
        self.model.load(jobs)
        self.model.load_workers(stats)
        self.loaded = self.main.loaded = True
        self.main.rebuild()

    @work(exclusive=True, group="companies")
    async def refresh_companies(self) -> None:
        if time.monotonic() - self._companies_at < COMPANY_REFRESH_SECONDS:
            return
        try:
            await self._load_companies()
        except ClientError as exc:
            self.notify(f"could not list companies: {exc.message}", severity="warning")
            return
        self.main.rebuild()

    async def _load_companies(self) -> None:
        self._companies_at = time.monotonic()
        self.model.load_companies(await self.client.companies())

    @work(group="actions")
    async def act(self, job_id: str, action: str) -> None:
        """Cancel or retry a job; the feed shows the result."""
        try:
            if action == "cancel":
                await self.client.cancel(job_id)
            else:
                await self.client.retry(job_id)
        except ClientError as exc:
            self.notify(f"{action} {job_id[:8]}: {exc.message}", severity="error")
            return
        self.notify(f"{action} requested for {job_id[:8]}")
