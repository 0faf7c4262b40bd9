"""Which jobs a list, a count or a bulk action is about, and the text forms of its
times: `--since 1h`, `--before 2026-12-01T00:00:00Z`, `CALLBOARD_JOB_RETENTION=7d`.

A filter of several statuses means any of them; its times bound `created_at`
(`created_after` inclusive, `created_before` exclusive), so "older than 2 days" is
`created_before = now - 2d`. The same type serves the stores, the runtime, the HTTP
routes and the client, so all of them read a filter the same way.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .jobs import Job, JobStatus

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NEVER = {"0", "never", "off"}


def parse_duration(raw: str) -> float:
    """Seconds from "30s", "15m", "1h", "2d" (or a bare number of seconds); ValueError
    with a one-line message otherwise."""
    text = raw.strip().lower()
    match = _DURATION.match(text)
    if match:
        value = float(match[1]) * _UNITS[match[2]]
    else:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"expected a duration such as 30s, 15m, 1h or 2d, got {raw!r}")
    return value


def parse_retention(raw: str) -> float | None:
    """A retention: a duration, or 0 / "never" / "off" for keeping for ever (None)."""
    if raw.strip().lower() in _NEVER:
        return None
    try:
        return parse_duration(raw)
    except ValueError:
        raise ValueError(f"expected a duration such as 7d or 36h, or never, got {raw!r}") from None


def parse_timestamp(raw: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 time such as 2026-12-01T09:30:00Z, got {raw!r}"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_moment(raw: str, now: datetime) -> datetime:
    """A duration ago ("1h": an hour before `now`) or an ISO 8601 time."""
    try:
        return now - timedelta(seconds=parse_duration(raw))
    except ValueError:
        pass
    try:
        return parse_timestamp(raw)
    except ValueError:
        raise ValueError(
            f"expected a duration such as 30s, 15m, 1h or 2d, or an ISO 8601 time, got {raw!r}"
        ) from None


def parse_statuses(values: Iterable[str]) -> frozenset[JobStatus] | None:
    """Statuses from repeated and/or comma-separated values ("queued,running");
    None when there are none (every status). ValueError names the unknown one."""
    found: set[JobStatus] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                raise ValueError(f"empty status in {value!r}")
            try:
                found.add(JobStatus(name))
            except ValueError:
                known = ", ".join(s.value for s in JobStatus)
                raise ValueError(f"status must be one of {known}, got {part.strip()!r}") from None
    return frozenset(found) or None


def as_statuses(
    status: JobStatus | str | Collection[JobStatus | str] | None,
) -> frozenset[JobStatus] | None:
    """One status, several, or None (every status) as a set; an empty collection is
    no status at all (a filter nothing matches)."""
    if status is None:
        return None
    if isinstance(status, str):
        return frozenset({JobStatus(status)})
    return frozenset(JobStatus(s) for s in status)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Jobs of one company (None: every company) in any of `statuses` (None: every
    status), of one type and source task when given, created in
    [created_after, created_before)."""

    company_id: str | None = None
    statuses: frozenset[JobStatus] | None = None
    job_type: str | None = None
    source_task_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def matches(self, job: Job) -> bool:
        return (
            (self.company_id is None or job.company_id == self.company_id)
            and (self.statuses is None or job.status in self.statuses)
            and (self.job_type is None or job.job_type == self.job_type)
            and (self.source_task_id is None or job.source_task_id == self.source_task_id)
            and (self.created_after is None or job.created_at >= self.created_after)
            and (self.created_before is None or job.created_at < self.created_before)
        )
