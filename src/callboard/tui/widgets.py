"""The dashboard's widgets. Each one draws what it is handed; none does I/O or keeps
the model: the screen's flush hands them the changes a few times a second."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Log, Sparkline, Static
from textual.widgets.data_table import ColumnKey

from ..client import Job
from . import cells
from .model import STATUSES, Worker


class ConnectionHeader(Static):
    """Server URL, connection state, events/s. The state is also a CSS class
    (`-connected`, `-reconnecting`, `-failed`, `-connecting`) so each looks different."""

    DEFAULT_CSS = """
    ConnectionHeader { height: 1; padding: 0 1; background: $panel; }
    """

    url: reactive[str] = reactive("")
    state: reactive[str] = reactive("connecting")
    detail: reactive[str] = reactive("")
    rate: reactive[float] = reactive(0.0)
    paused: reactive[bool] = reactive(False)
    view: reactive[str] = reactive("all jobs")
    order: reactive[str] = reactive("newest first")
    following: reactive[bool] = reactive(False)

    def watch_state(self, old: str, new: str) -> None:
        self.remove_class(f"-{old.replace(' ', '-')}")
        self.add_class(f"-{new.replace(' ', '-')}")

    def render(self) -> Text:
        text = Text("callboard ", style="bold")
        text.append(self.url, style="underline")
        text.append("  ")
        label = {"connected": "● connected", "reconnecting": "◌ reconnecting"}.get(
            self.state, f"○ {self.state}"
        )
        text.append(label, style="bold")
        if self.detail:
            text.append(f" {self.detail}")
        text.append(f"  {self.rate:,.0f} events/s")
        text.append(f"  showing: {self.view}", style="dim")
        text.append(f"  sorted: {self.order}", style="dim")
        if self.following:
            text.append("  FOLLOWING NEWEST", style="bold reverse")
        if self.paused:
            text.append("  PAUSED", style="bold reverse")
        return text


class Summary(Horizontal):
    """Counts by status and the jobs-finished-per-second sparkline."""

    DEFAULT_CSS = """
    Summary { height: 4; }
    Summary > #counts { width: auto; min-width: 60; padding: 0 1; }
    Summary > Sparkline { width: 1fr; margin: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="counts")
        yield Sparkline([0.0], id="throughput")

    def show(
        self,
        counts: dict[str, int],
        series: list[float],
        per_second: float,
        companies: Sequence[tuple[str, int, int]] = (),
    ) -> None:
        text = Text()
        for status in STATUSES:
            text.append(f"{status} ", style=cells.STATUS_STYLES[status])
            text.append(f"{counts.get(status, 0):,}  ")
        text.append(f"\nfinished {per_second:,.1f}/s over the last {len(series)}s →", style="dim")
        # Each busy company's share: running and queued on every node.
        text.append("\ncompanies ", style="dim")
        if not companies:
            text.append("idle", style="dim")
        for name, running, queued in companies:
            text.append(f"{name} ", style="bold")
            text.append(f"{running:,} running {queued:,} queued  ")
        self.query_one("#counts", Static).update(text)
        self.query_one(Sparkline).data = series


@dataclass(frozen=True)
class Order:
    """How the table is sorted: a column of `cells.SORTABLE`, its direction, and
    whether running jobs come first whatever the column."""

    column: str = "age"
    descending: bool = False
    running_first: bool = False

    def describe(self) -> str:
        arrow = "▼" if self.descending else "▲"
        text = f"{cells.LABELS[self.column]} {arrow}"
        if self.column == "age" and not self.descending:
            text = "newest first"
        elif self.column == "age":
            text = "oldest first"
        return f"running first, {text}" if self.running_first else text


class JobTable(DataTable):
    """The live jobs, newest first unless sorted otherwise, updated in place: `sync()`
    touches only the rows of jobs that changed, and re-sorts only when rows were added
    or (sorted by anything but age) a shown job changed.

    It shows the newest `max_rows` jobs that match the filter, not all 10,000 the model
    knows: DataTable's sort and row removal cost grows with its row count, and at
    hundreds of events a second a 10,000-row table could not keep up (see
    bench/dashboard_events.py). Older jobs are a filter or a search away.

    `follow` keeps the cursor on the newest job as jobs arrive; moving the cursor to
    another row turns it off."""

    max_rows = 1000

    DEFAULT_CSS = """
    JobTable { height: 1fr; }
    """

    BINDINGS = [
        # DataTable's home/end move across columns; rows are what this table is about.
        Binding("home", "scroll_top", "newest", show=False),
        Binding("end", "scroll_bottom", "oldest", show=False),
    ]

    class FollowChanged(Message):
        """`follow` was turned on or off (by a key, or by moving the cursor away)."""

        def __init__(self, follow: bool) -> None:
            super().__init__()
            self.follow = follow

    class OrderChanged(Message):
        def __init__(self, order: Order) -> None:
            super().__init__()
            self.order = order

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._jobs: dict[str, Job] = {}  # the jobs shown, by id (the row keys)
        self._names: dict[str, str] = {}
        self.order = Order()
        self.follow = False
        # Columns now, not on mount: a fast first load can arrive before the mount.
        for key, label, width in cells.COLUMNS:
            self.add_column(label, key=key, width=width)
        self._label_sorted_column()

    @property
    def selected_job_id(self) -> str | None:
        if not self.row_count:
            return None
        row_key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key
        return row_key.value

    def newest_job_id(self) -> str | None:
        if not self._jobs:
            return None
        return max(self._jobs.values(), key=lambda job: job.created_at).id

    def rebuild(
        self, jobs: Iterable[Job], company: dict[str, str], *, to_top: bool = False
    ) -> None:
        """Start over (a new filter, or a reload): the only time every row is redrawn.
        `to_top`: show the first rows (a new filter) instead of keeping the selection."""
        selected = None if to_top else self.selected_job_id
        self.clear()
        self._jobs.clear()
        self._names = company
        now = cells.utcnow()
        for job in itertools.islice(jobs, self.max_rows):
            self._add(job, company, now)
        self._sort(selected)
        if to_top and not self.follow:
            self.move_cursor(row=0, animate=False)
            self.scroll_to(y=0, animate=False, immediate=True)

    def sync(
        self,
        changed: Iterable[Job],
        hidden: Iterable[str],
        company: dict[str, str],
    ) -> None:
        """Redraw the changed jobs (adding those new to the view) and drop `hidden`."""
        selected = self.selected_job_id
        self._names = company
        now = cells.utcnow()
        added = touched = False
        for job_id in hidden:
            if job_id in self._jobs:
                self.remove_row(job_id)
                del self._jobs[job_id]
        oldest = min((job.created_at for job in self._jobs.values()), default=None)
        for job in changed:
            if job.id not in self._jobs and (
                len(self._jobs) >= self.max_rows and oldest is not None and job.created_at <= oldest
            ):
                continue  # older than every row shown, in a full table
            if job.id in self._jobs:
                self._jobs[job.id] = job
                values = cells.row(job, company.get(job.company_id, job.company_id[:8]), now)
                for (column, _, _), value in zip(cells.COLUMNS, values, strict=True):
                    if column != "id":
                        self.update_cell(job.id, column, value)
                touched = True
            else:
                self._add(job, company, now)
                added = True
        if added:
            excess = len(self._jobs) - self.max_rows
            if excess > 0:
                for job in heapq.nsmallest(excess, self._jobs.values(), key=_created):
                    self.remove_row(job.id)
                    del self._jobs[job.id]
        order = self.order
        if added or (touched and (order.column != "age" or order.running_first)):
            self._sort(selected)

    def tick(self, jobs: dict[str, Job]) -> None:
        """Refresh age, duration and delayed jobs' countdown of the rows on screen only
        (once a second)."""
        now = cells.utcnow()
        top = int(self.scroll_y)
        for table_row in self.ordered_rows[top : top + self.size.height]:
            job = jobs.get(table_row.key.value or "")
            if job is not None:
                self.update_cell(table_row.key, "age", cells.age(job, now))
                self.update_cell(table_row.key, "duration", cells.duration(job, now))
                if str(job.status) == "queued":
                    waiting = cells.delayed(job, now)
                    self.update_cell(
                        table_row.key,
                        "progress",
                        cells.waiting_text(job, now) if waiting else cells.progress_text(job),
                    )

    # --- order and following ------------------------------------------------------

    def sort_by(self, order: Order) -> None:
        self.order = order
        self.post_message(self.OrderChanged(order))
        self._label_sorted_column()
        self._sort(self.selected_job_id)
        if not self.follow:
            # A new order: show its first rows, like a new filter does.
            self.move_cursor(row=0, animate=False)
            self.scroll_to(y=0, animate=False, immediate=True)

    def set_follow(self, follow: bool) -> None:
        if follow != self.follow:
            self.follow = follow
            self.post_message(self.FollowChanged(follow))
        if follow:
            self._go_to_newest()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a sortable column's header sorts by it; again reverses it."""
        event.stop()
        column = str(event.column_key.value)
        if column == "id":
            column = "age"
        if column not in cells.SORTABLE:
            return
        order = self.order
        descending = not order.descending if order.column == column else False
        self.sort_by(Order(column, descending, order.running_first))

    # The operator moving the cursor to another job stops following. (Not from
    # RowHighlighted: the table's own moves post it too, and it arrives later.)

    def action_cursor_up(self) -> None:
        super().action_cursor_up()
        self._moved()

    def action_cursor_down(self) -> None:
        super().action_cursor_down()
        self._moved()

    def action_page_up(self) -> None:
        super().action_page_up()
        self._moved()

    def action_page_down(self) -> None:
        super().action_page_down()
        self._moved()

    def action_scroll_top(self) -> None:
        super().action_scroll_top()
        self._moved()

    def action_scroll_bottom(self) -> None:
        super().action_scroll_bottom()
        self._moved()

    def _on_click(self, _: events.Click) -> None:
        # Textual runs DataTable's own _on_click as well (handlers run along the MRO),
        # after this one: look at the cursor once it has moved.
        self.call_later(self._moved)

    def _moved(self) -> None:
        if self.follow and self.selected_job_id != self.newest_job_id():
            self.set_follow(False)

    def _go_to_newest(self) -> None:
        newest = self.newest_job_id()
        if newest is not None:
            self.move_cursor(row=self.get_row_index(newest), animate=False)

    def _add(self, job: Job, company: dict[str, str], now: datetime) -> None:
        name = company.get(job.company_id, job.company_id[:8])
        self.add_row(*cells.row(job, name, now), key=job.id)  # type: ignore[arg-type]
        self._jobs[job.id] = job

    def _sort(self, selected: str | None) -> None:
        order, jobs, names, now = self.order, self._jobs, self._names, cells.utcnow()

        def key(cell: object) -> Any:
            # DataTable.sort hands the key function cell values only; the id cell
            # carries its job's id for this.
            job = jobs.get(cell.job_id) if isinstance(cell, cells.IdCell) else None
            if job is None:
                return (2, ())
            value = cells.sort_value(
                job, order.column, names.get(job.company_id, job.company_id[:8]), now
            )
            if not order.running_first:
                return (0, value)
            running = str(job.status) == "running"
            # `reverse` turns the whole key around: running must stay first either way.
            return (int(running == order.descending), value)

        self.sort("id", key=key, reverse=order.descending)
        if self.follow:
            self._go_to_newest()
        elif selected is not None and selected in jobs:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _label_sorted_column(self) -> None:
        column = self.order.column
        arrow = " ▼" if self.order.descending else " ▲"
        for key, label, _ in cells.COLUMNS:
            shown = Text(label + arrow, style="bold") if key == column else Text(label)
            self.columns[ColumnKey(key)].label = shown
        self.refresh()


def _created(job: Job) -> datetime:
    return job.created_at


class WorkersPanel(Static):
    """Each worker: idle, or the job it runs and for how long."""

    DEFAULT_CSS = """
    WorkersPanel { width: 40; height: 1fr; padding: 0 1; border: round $primary; }
    """

    def show(self, workers: dict[str, Worker], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if not workers:
            self.update(Text("no worker activity seen yet", style="dim"))
            return
        text = Text()
        for name in sorted(workers, key=_natural):
            worker = workers[name]
            text.append(f"{name:<10} ", style="bold")
            if worker.job_id is None:
                text.append("idle\n", style="dim")
            else:
                took = cells.span(now - worker.since) if worker.since is not None else ""
                text.append(f"{worker.job_id[:8]} {worker.job_type or ''} ", style="yellow")
                text.append(f"{took}\n")
        self.update(text)


def _natural(name: str) -> tuple[str, int]:
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return head, int(tail) if tail else -1


class EventLog(Log, can_focus=False):
    """The last few hundred events, newest at the bottom. Not focusable: it scrolls
    with the mouse, and keys belong to the job table."""

    DEFAULT_CSS = """
    EventLog { height: 10; border: round $primary; }
    """

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> EventLog:
        super().write_lines(lines, scroll_end)
        if self.max_lines is not None and self.line_count >= self.max_lines:
            # Once Log holds max_lines, a write drops lines from the top and the
            # view stays at the same scroll offset: Log refreshes only the rows past
            # the old end, so the screen would keep showing the lines of the moment it
            # filled up. Everything visible moved: redraw it.
            self.refresh()
        return self
