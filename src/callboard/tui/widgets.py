"""The dashboard's widgets. Each one draws what it is handed; none does I/O or keeps
the model: the screen's flush hands them the changes a few times a second."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.reactive import reactive
from textual.widgets import DataTable, Log, Sparkline, Static

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


class JobTable(DataTable):
    """The live jobs, newest first, updated in place: `sync()` touches only the rows
    of jobs that changed, and re-sorts only when rows were added.

    It shows the newest `max_rows` jobs that match the filter, not all 10,000 the model
    knows: DataTable's sort and row removal cost grows with its row count, and at
    hundreds of events a second a 10,000-row table could not keep up (see
    bench/dashboard_events.py). Older jobs are a filter or a search away."""

    max_rows = 1000

    DEFAULT_CSS = """
    JobTable { height: 1fr; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._created: dict[str, float] = {}  # the row keys, i.e. the job ids shown
        # Columns now, not on mount: a fast first load can arrive before the mount.
        for key, label, width in cells.COLUMNS:
            self.add_column(label, key=key, width=width)

    @property
    def selected_job_id(self) -> str | None:
        if not self.row_count:
            return None
        row_key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key
        return row_key.value

    def rebuild(self, jobs: Iterable[Job], company: dict[str, str]) -> None:
        """Start over (a new filter, or a reload): the only time every row is redrawn."""
        selected = self.selected_job_id
        self.clear()
        self._created.clear()
        now = cells.utcnow()
        for job in itertools.islice(jobs, self.max_rows):
            self._add(job, company, now)
        self._sort(selected)

    def sync(
        self,
        changed: Iterable[Job],
        hidden: Iterable[str],
        company: dict[str, str],
    ) -> None:
        """Redraw the changed jobs (adding those new to the view) and drop `hidden`."""
        selected = self.selected_job_id
        now = cells.utcnow()
        added = False
        for job_id in hidden:
            if job_id in self._created:
                self.remove_row(job_id)
                del self._created[job_id]
        oldest = min(self._created.values(), default=0.0)
        for job in changed:
            if job.id not in self._created and (
                len(self._created) >= self.max_rows and job.created_at.timestamp() <= oldest
            ):
                continue  # older than every row shown, in a full table
            if job.id in self._created:
                values = cells.row(job, company.get(job.company_id, job.company_id[:8]), now)
                for (column, _, _), value in zip(cells.COLUMNS, values, strict=True):
                    if column != "id":
                        self.update_cell(job.id, column, value)
            else:
                self._add(job, company, now)
                added = True
        if added:
            excess = len(self._created) - self.max_rows
            if excess > 0:
                for job_id in heapq.nsmallest(excess, self._created, key=self._created.get):
                    self.remove_row(job_id)
                    del self._created[job_id]
            self._sort(selected)

    def tick(self, jobs: dict[str, Job]) -> None:
        """Refresh age and duration of the rows on screen only (once a second)."""
        now = cells.utcnow()
        top = int(self.scroll_y)
        for table_row in self.ordered_rows[top : top + self.size.height]:
            job = jobs.get(table_row.key.value or "")
            if job is not None:
                self.update_cell(table_row.key, "age", cells.age(job, now))
                self.update_cell(table_row.key, "duration", cells.duration(job, now))

    def _add(self, job: Job, company: dict[str, str], now: object) -> None:
        name = company.get(job.company_id, job.company_id[:8])
        self.add_row(*cells.row(job, name, now), key=job.id)  # type: ignore[arg-type]
        self._created[job.id] = job.created_at.timestamp()

    def _sort(self, selected: str | None) -> None:
        self.sort("id", key=_created_at, reverse=True)
        if selected is not None and selected in self._created:
            self.move_cursor(row=self.get_row_index(selected), animate=False)


def _created_at(cell: object) -> float:
    # DataTable.sort hands the key function cell values only; the id cell carries
    # its job's creation time for this.
    return cell.created if isinstance(cell, cells.IdCell) else 0.0


class WorkersPanel(Static):
    """Each worker: idle, or the job it runs and for how long."""

    DEFAULT_CSS = """
    WorkersPanel { width: 44; height: 1fr; padding: 0 1; border: round $primary; }
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


class EventLog(Log):
    """The last few hundred events, newest at the bottom."""

    DEFAULT_CSS = """
    EventLog { height: 10; border: round $primary; }
    """
