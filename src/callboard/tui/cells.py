"""How a job reads in the table: plain functions from a job to Rich text, shared by
the table and the detail screen."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text

from ..client import Job

STATUS_STYLES = {
    "queued": "bold cyan",
    "running": "bold yellow",
    "done": "bold green",
    "failed": "bold red",
    "cancelled": "bold magenta",
}

COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("id", "id", 8),
    ("company", "company", 12),
    ("type", "type", 12),
    ("status", "status", 9),
    ("progress", "progress", 32),
    ("attempt", "try", 5),
    ("age", "age", 6),
    ("duration", "took", 6),
)


class IdCell(str):
    """The short id shown in the table, carrying its job's creation time so the table
    can sort newest first without a visible timestamp column."""

    created: float

    def __new__(cls, job: Job) -> IdCell:
        cell = super().__new__(cls, job.id[:8])
        cell.created = job.created_at.timestamp()
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
        progress_text(job),
        f"{job.attempt}/{job.max_attempts}",
        age(job, now),
        duration(job, now),
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
