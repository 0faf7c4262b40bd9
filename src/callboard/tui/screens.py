"""The two views: the live dashboard and one job's detail. They draw what the app
(app.py) hands them, the model and the client, and post messages for the network work
the app owns; the detail fetches its one job itself, so the fetch ends with the screen."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any, Literal

from rich.console import Group
from rich.json import JSON
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..client import Asset, AsyncClient, ClientError, Job, JobEvent
from . import cells
from .cells import SORTABLE
from .dialogs import ConfirmScreen, FilterScreen, HelpScreen, SearchScreen
from .model import DashboardModel, JobFilter
from .schedules import SchedulesScreen
from .widgets import ConnectionHeader, EventLog, JobTable, Summary, WorkersPanel

FLUSH_SECONDS = 0.25  # redraw changed rows at most 4 times a second


class DashboardScreen(Screen[None]):
    # Every key is also in KEYS (dialogs.py), which the help screen (?) lists.
    BINDINGS = [
        Binding("c", "cancel_job", "cancel"),
        Binding("r", "retry_job", "retry"),
        Binding("f", "filter", "filter"),
        Binding("slash", "search", "search", key_display="/"),
        Binding("escape", "clear_filter", "clear filter", show=False),
        Binding("o", "sort", "sort"),
        Binding("O", "reverse", "reverse", key_display="O", show=False),
        Binding("u", "running_first", "running first"),
        Binding("n", "follow", "follow newest"),
        Binding("p", "pause", "pause"),
        Binding("s", "schedules", "schedules"),
        Binding("enter", "detail", "detail", show=True, priority=False),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "app.quit", "quit"),
    ]

    # init=False: what the widgets show before the first load already matches these.
    paused: var[bool] = var(False, init=False)
    job_filter: var[JobFilter] = var(JobFilter, always_update=True, init=False)

    class ReloadRequested(Message):
        """The feed skipped events: the jobs must be loaded afresh."""

    class CompaniesRequested(Message):
        """A job of a company with no known name is shown."""

    class JobActionRequested(Message):
        """The operator asked to cancel (and confirmed) or retry a job."""

        def __init__(self, job_id: str, action: Literal["cancel", "retry"]) -> None:
            super().__init__()
            self.job_id = job_id
            self.action = action

    def __init__(self, model: DashboardModel, client: AsyncClient) -> None:
        super().__init__()
        self.model = model
        self.client = client  # the header shows its URL; the job detail fetches with it
        # While the feed reconnects: when it tries again (monotonic), counted down by tick.
        self.reconnect_at: float | None = None
        # Made here, not found by query: a fast first load can arrive before the
        # table (one container down) is mounted, and it can take rows before that.
        self.table = JobTable(id="jobs")
        self.empty = Static(id="empty")
        self.loaded = False  # set by the app once the first load is drawn

    def compose(self) -> ComposeResult:
        yield ConnectionHeader(id="header")
        yield Static(id="banner")
        yield Summary(id="summary")
        with Horizontal(id="middle"):
            with Vertical(id="jobs-pane"):
                yield self.empty
                yield self.table
            yield WorkersPanel(id="workers")
        yield EventLog(max_lines=300, id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ConnectionHeader).url = self.client.url
        self.query_one(WorkersPanel).show({})
        self.set_interval(FLUSH_SECONDS, self.flush)
        self.set_interval(1.0, self.tick)
        self.table.focus()
        self.show_empty()

    def on_screen_resume(self) -> None:
        # Back from a dialog or another view: the keys are the table's again, wherever
        # focus was before (a click may have moved it).
        self.table.focus()

    # --- drawing ------------------------------------------------------------------

    def flush(self) -> None:
        """Draw what changed since the last flush (never the whole table)."""
        model = self.model
        now = time.monotonic()
        header = self.query_one(ConnectionHeader)
        header.rate = model.events.per_second(now, over=3)
        self.query_one(Summary).show(
            model.counts,
            model.finished.series(now)[-60:],
            model.finished.per_second(now),
            model.company_summary(),
        )
        if self.paused:
            return
        changes = model.take_changes()
        if changes.reload:
            self.post_message(self.ReloadRequested())
        names, job_filter = model.company_names, self.job_filter
        changed, hidden = [], set(changes.removed)
        unnamed = False
        for job_id in changes.jobs:
            job = model.jobs.get(job_id)
            if job is None:
                continue
            if job_filter.matches(job, names.get(job.company_id)):
                changed.append(job)
            else:
                hidden.add(job_id)
            unnamed = unnamed or job.company_id not in names
        if unnamed:
            self.post_message(self.CompaniesRequested())
        self.table.sync(changed, hidden, names)
        self.show_empty()
        if changes.log:
            self.query_one(EventLog).write_lines(changes.log)
        self.query_one(WorkersPanel).show(model.workers, now)

    def tick(self) -> None:
        """Once a second: ages, durations, the reconnect countdown."""
        if not self.paused:
            self.table.tick(self.model.jobs)
        if self.reconnect_at is not None:
            left = max(0.0, self.reconnect_at - time.monotonic())
            self.query_one(ConnectionHeader).detail = f"in {left:.0f}s" if left >= 0.5 else "now"

    def rebuild(self, *, to_top: bool = False) -> None:
        """Redraw the table from the model; `to_top` (a new filter or search) shows
        its first rows rather than keeping the selected job in view."""
        self.model.take_changes()  # everything is drawn afresh
        names = self.model.company_names
        jobs = self.model.newest_first(self.job_filter, names)
        self.table.rebuild(jobs, names, to_top=to_top)
        self.query_one(ConnectionHeader).view = self.job_filter.describe()
        self.show_empty()

    def show_empty(self) -> None:
        """Say why the table is empty, instead of leaving it blank."""
        empty = self.empty
        shown = self.table.row_count > 0
        empty.set_class(not shown, "-visible")
        if shown:
            return
        if self.job_filter.active:
            empty.update(
                f"No job matches {self.job_filter.describe()}. "
                "f: change the filter · /: change the search · Esc: show all jobs"
            )
        elif not self.loaded:
            empty.update("Loading jobs…")
        else:
            empty.update("No jobs yet: submitted jobs appear here as they arrive.")

    def show_connection(self, state: str, detail: str) -> None:
        header = self.query_one(ConnectionHeader)
        header.state = state
        header.detail = detail
        banner = self.query_one("#banner", Static)
        failed = state in ("auth failed", "failed")
        banner.set_class(failed, "-visible")
        if failed:
            banner.update(f"{detail}\nPress q to quit.")

    def watch_paused(self, paused: bool) -> None:
        self.query_one(ConnectionHeader).paused = paused

    def watch_job_filter(self) -> None:
        self.rebuild(to_top=True)

    def on_job_table_follow_changed(self, message: JobTable.FollowChanged) -> None:
        self.query_one(ConnectionHeader).following = message.follow

    # --- keys ---------------------------------------------------------------------

    def _selected(self) -> str | None:
        job_id = self.table.selected_job_id
        if job_id is None:
            self.notify("no job selected", severity="warning")
        return job_id

    def action_cancel_job(self) -> None:
        job_id = self._selected()
        if job_id is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.post_message(self.JobActionRequested(job_id, "cancel"))

        self.app.push_screen(ConfirmScreen(f"Cancel job {job_id}?"), answered)

    def action_retry_job(self) -> None:
        job_id = self._selected()
        if job_id is not None:
            self.post_message(self.JobActionRequested(job_id, "retry"))

    def action_filter(self) -> None:
        def chosen(job_filter: JobFilter | None) -> None:
            if job_filter is not None:
                self.job_filter = job_filter

        names = self.model.company_names
        known = {cid: names.get(cid, cid[:8]) for cid in self.model.company_ids()}
        known.update(names)
        screen = FilterScreen(self.job_filter, known, self.model.job_types())
        self.app.push_screen(screen, chosen)

    def action_search(self) -> None:
        def chosen(text: str | None) -> None:
            if text is not None:
                self.job_filter = replace(self.job_filter, text=text or None)

        self.app.push_screen(SearchScreen(self.job_filter.text), chosen)

    def action_clear_filter(self) -> None:
        if self.job_filter.active:
            self.job_filter = JobFilter()

    def action_sort(self) -> None:
        """The next column of `cells.SORTABLE`, ascending."""
        order = self.table.order
        column = SORTABLE[(SORTABLE.index(order.column) + 1) % len(SORTABLE)]
        self.table.sort_by(replace(order, column=column, descending=False))

    def action_reverse(self) -> None:
        order = self.table.order
        self.table.sort_by(replace(order, descending=not order.descending))

    def action_running_first(self) -> None:
        order = self.table.order
        self.table.sort_by(replace(order, running_first=not order.running_first))

    def on_job_table_order_changed(self, message: JobTable.OrderChanged) -> None:
        # By a key here, or by a click on a column header.
        self.query_one(ConnectionHeader).order = message.order.describe()

    def action_follow(self) -> None:
        self.table.set_follow(not self.table.follow)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_pause(self) -> None:
        self.paused = not self.paused

    def action_schedules(self) -> None:
        self.app.push_screen(SchedulesScreen(self.client))

    def action_detail(self) -> None:
        job_id = self._selected()
        if job_id is not None:
            self._show_detail(job_id)

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        # Enter on the table arrives as RowSelected (the table consumes the key).
        if event.row_key.value is not None:
            self._show_detail(event.row_key.value)

    def _show_detail(self, job_id: str) -> None:
        self.app.push_screen(JobDetailScreen(job_id, self.model, self.client))


class JobDetailScreen(Screen[None]):
    """Every field of one job, its input and result as JSON, its error in full (type
    and traceback when the server sends them), its assets and its event history across
    every attempt, fetched when the screen opens (r reloads)."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "back"),
        Binding("r", "reload", "reload"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, job_id: str, model: DashboardModel, client: AsyncClient) -> None:
        super().__init__()
        self.job_id = job_id
        self.model = model  # for the company's name
        self.client = client
        self.job: Job | None = None  # what is shown, once loaded
        self.assets: list[Asset] = []
        self.history: list[JobEvent] = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(f"job {self.job_id}: loading…", id="fields")
            yield Static(id="input", classes="section")
            yield Static(id="result", classes="section")
            yield Static(id="error", classes="section")
            yield Static(id="assets", classes="section")
            yield Static(id="history", classes="section")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True)
    async def load(self) -> None:
        client = self.client
        try:
            job = await client.get(self.job_id)
            assets = await self._assets(job)
            history = await client.history(self.job_id)
        except ClientError as exc:
            self.query_one("#fields", Static).update(
                Text(f"job {self.job_id}: {exc.message}", style="bold red")
            )
            return
        self.show(job, assets, history)

    async def _assets(self, job: Job) -> list[Asset]:
        """The job's assets: its result, and any asset it created among the newest
        ones of its company (the API lists assets per company, not per job)."""
        client = self.client
        found: dict[str, Asset] = {}
        scanned = 0
        async for asset in client.assets(
            job.company_id, source_task_id=job.source_task_id, page_size=200
        ):
            if asset.created_by_job_id == job.id:
                found[asset.id] = asset
            scanned += 1
            if scanned >= 1000:
                break
        if job.result_asset_id and job.result_asset_id not in found:
            found[job.result_asset_id] = await client.asset(job.result_asset_id, job.company_id)
        return list(found.values())

    def show(self, job: Job, assets: list[Asset], history: list[JobEvent]) -> None:
        self.job, self.assets, self.history = job, assets, history
        fields = Table.grid(padding=(0, 2))
        fields.add_column(style="bold")
        fields.add_column()
        company = self.model.company_names.get(job.company_id)
        rows: list[tuple[str, Any]] = [
            ("id", job.id),
            ("company", f"{company} ({job.company_id})" if company else job.company_id),
            ("type", job.job_type),
            ("status", cells.status_text(str(job.status))),
            ("progress", cells.progress_text(job, 20)),
            ("attempt", f"{job.attempt} of {job.max_attempts}"),
            ("priority", str(job.priority)),
            ("timeout", f"{job.timeout_seconds:g}s" if job.timeout_seconds else "none"),
            ("source task", job.source_task_id or ""),
            ("idempotency key", job.idempotency_key or ""),
            ("result asset", job.result_asset_id or ""),
            ("created", _when(job.created_at)),
            ("run at", _run_at(job)),
            ("started", _when(job.started_at)),
            ("finished", _when(job.finished_at)),
            ("updated", _when(job.updated_at)),
        ]
        for name, value in rows:
            fields.add_row(name, value)
        self.query_one("#fields", Static).update(Group(Text("Job", style="bold underline"), fields))
        self.query_one("#input", Static).update(
            Group(Text("Input", style="bold underline"), JSON(json.dumps(dict(job.input))))
        )
        self.query_one("#result", Static).update(
            Group(Text("Result", style="bold underline"), _result(job))
        )
        self.query_one("#error", Static).update(
            Group(Text("Error", style="bold underline"), *_error(job))
        )
        self.query_one("#assets", Static).update(
            Group(Text("Assets", style="bold underline"), _assets_table(assets))
        )
        self.query_one("#history", Static).update(
            Group(Text("Events", style="bold underline"), _history_table(history))
        )


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def _run_at(job: Job) -> Any:
    now = cells.utcnow()
    if not cells.delayed(job, now):
        return _when(job.run_at)
    text = Text(_when(job.run_at) + "  ")
    return text.append_text(cells.waiting_text(job, now))


def _result(job: Job) -> Any:
    """What the handler returned (JSON), once the job is done."""
    if job.result is None:
        why = "none yet" if not job.terminal else "none"
        return Text(why, style="dim")
    return JSON(json.dumps(job.result))


def _error(job: Job) -> list[Any]:
    """The message, with its type before it and its traceback under it when the
    failure has them."""
    if not job.error_message:
        return [Text("none", style="dim")]
    kind = job.error_type
    text = Text(f"{kind}: " if kind else "", style="bold red")
    text.append(job.error_message, style="red")
    parts: list[Any] = [text]
    if job.error_traceback:
        parts.append(Text(job.error_traceback.rstrip(), style="dim"))
    return parts


def _assets_table(assets: list[Asset]) -> Any:
    if not assets:
        return Text("none", style="dim")
    table = Table(box=None, padding=(0, 2))
    for column in ("id", "name", "type", "size", "sha256"):
        table.add_column(column)
    for asset in assets:
        table.add_row(
            asset.id,
            asset.original_filename or "",
            asset.content_type,
            cells.size(asset.byte_size),
            asset.sha256[:16] + "…",
        )
    return table


def _history_table(history: list[JobEvent]) -> Any:
    if not history:
        return Text("none", style="dim")
    table = Table(box=None, padding=(0, 2))
    for column in ("#", "at", "event", "status", "progress", "error"):
        table.add_column(column)
    for event in history:
        job = event.job
        progress = f"{job.progress.percent:g}% {job.progress.message or ''}".strip()
        table.add_row(
            str(event.id),
            _when(event.created_at),
            str(event.type).removeprefix("content_job."),
            cells.status_text(str(job.status)),
            progress,
            job.error_message or "",
        )
    return table
