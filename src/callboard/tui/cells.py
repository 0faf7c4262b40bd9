"""How a job reads in the table: plain functions from a job to Rich text, shared by
the table and the detail screen, and the order each column sorts in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from ..client import Job

STATUS_STYLES = {
    "queued": "bold cyan",
    "running": "bold yellow",
    "done": "bold green",
    "failed": "bold red",
    "cancelled": "bold magenta",
}

# Widths: the whole row fits beside the workers panel in a 160-column terminal. The
# error sits by the status, where a failed job (no progress to show) is read.
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("id", "id", 8),
    ("company", "company", 10),
    ("type", "type", 12),
    ("status", "status", 9),
    ("error", "error", 22),
    ("progress", "progress", 22),
    ("attempt", "try", 5),
    ("age", "age", 6),
    ("duration", "took", 6),
)

#: The columns `o` cycles through, in that order; `age` (newest first) is the default.
SORTABLE: tuple[str, ...] = (
    "age",
    "status",
    "error",
    "company",
    "type",
    "progress",
    "attempt",
    "duration",
)
LABELS: dict[str, str] = {key: label for key, label, _ in COLUMNS}


class IdCell(str):
    """The short id shown in the table, carrying its job's full id: DataTable.sort hands
    its key function cell values only, and the table sorts by the job behind the row."""

    job_id: str

    def __new__(cls, job: Job) -> IdCell:
        cell = super().__new__(cls, job.id[:8])
        cell.job_id = job.id
        return cell


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def progress_text(job: Job, width: int = 10) -> Text:
    percent = max(0.0, min(100.0, float(job.progress.percent or 0)))
    if str(job.status) == "done":
        percent = 100.0
    filled = round(width * percent / 100)
    style = STATUS_STYLES.get(str(job.status), "")
    text = Text("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    text.append(f" {percent:3.0f}%")
    if job.progress.message:
        text.append(f" {job.progress.message}", style="dim")
    return text


def delayed(job: Job, now: datetime) -> bool:
    """Queued to run later (submitted with a delay, or waiting for its next attempt)."""
    return str(job.status) == "queued" and job.run_at > now


def waiting_text(job: Job, now: datetime) -> Text:
    """When a delayed job will run: in how long, and the local wall-clock time."""
    when = job.run_at.astimezone().strftime("%H:%M:%S")
    text = Text("⏲ in ", style="cyan")
    text.append(span((job.run_at - now).total_seconds()), style="bold cyan")
    text.append(f" ({when})", style="dim")
    return text


def error_text(job: Job) -> Text:
    """A failed job's error (its type, when known, then the message); a queued or
    running job with an error is being retried: its last attempt's, dimmed."""
    status = str(job.status)
    if not job.error_message or status not in ("failed", "queued", "running"):
        return Text("")
    kind = job.error_type
    message = " ".join(job.error_message.split())  # one line in a cell
    if status == "failed":
        text = Text(f"{kind}: " if kind else "", style="bold red")
        text.append(message, style="red")
    else:
        text = Text(f"last try: {kind + ': ' if kind else ''}{message}", style="dim")
    text.truncate(200, overflow="ellipsis")
    return text


def span(seconds: float | None) -> str:
    """A short human duration: 42s, 3m05s, 2h10m, 4d."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def age(job: Job, now: datetime) -> str:
    return span((now - job.created_at).total_seconds())


def duration(job: Job, now: datetime) -> str:
    if job.started_at is None:
        return ""
    end = job.finished_at or now
    return span((end - job.started_at).total_seconds())


def row(job: Job, company: str, now: datetime) -> tuple[object, ...]:
    return (
        IdCell(job),
        Text(company),
        Text(job.job_type),
        status_text(str(job.status)),
        error_text(job),
        waiting_text(job, now) if delayed(job, now) else progress_text(job),
        f"{job.attempt}/{job.max_attempts}",
        age(job, now),
        duration(job, now),
    )


def sort_value(job: Job, column: str, company: str, now: datetime) -> Any:
    """What `column` sorts a job by, ascending: youngest first for age, queued before
    running before the finished states for status; ties go newest first."""
    newest = -job.created_at.timestamp()
    if column == "status":
        order = STATUS_ORDER.get(str(job.status), len(STATUS_ORDER))
        return (order, newest)
    if column == "company":
        return (company.lower(), newest)
    if column == "type":
        return (job.job_type, newest)
    if column == "progress":
        return (float(job.progress.percent or 0), newest)
    if column == "attempt":
        return (job.attempt, newest)
    if column == "duration":
        took = None if job.started_at is None else ((job.finished_at or now) - job.started_at)
        return (-1.0 if took is None else took.total_seconds(), newest)
    if column == "error":
        return (error_text(job).plain, newest)
    return (newest,)


STATUS_ORDER = {status: n for n, status in enumerate(STATUS_STYLES)}


def utcnow() -> datetime:
    return datetime.now(UTC)


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
