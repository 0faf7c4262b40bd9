"""Job filters as the HTTP API spells them: in a list's query string, and in the body
of a bulk action. The same names in both: `status` (several: repeated, or
comma-separated, or a JSON array in a body), `jobType`, `createdAfter` (inclusive)
and `createdBefore` (exclusive), ISO 8601 times (a time without a zone is UTC). In a
body, null is the same as leaving a field out; a window that holds no time (after >=
before) matches nothing, as any filter may."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..jobs import JobFilter, parse_statuses, parse_timestamp
from .errors import bad_request
from .validation import check_fields, require_object

#: The body fields of a bulk action.
BULK_FIELDS = {"status", "jobType", "createdAfter", "createdBefore", "dryRun"}


def _statuses(values: list[str]):
    try:
        return parse_statuses(values)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def _time(name: str, raw: object) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise bad_request(f"{name} must be an ISO 8601 time such as 2026-12-01T09:30:00Z")
    try:
        return parse_timestamp(raw)
    except ValueError as exc:
        raise bad_request(f"{name}: {exc}") from None


def query_filter(args: Any, company_id: str | None) -> JobFilter:
    """A list's filter from its query string (a MultiDict: `status` may repeat)."""
    statuses = _statuses(args.getlist("status")) if args.getlist("status") else None
    after = _time("createdAfter", args.get("createdAfter"))
    before = _time("createdBefore", args.get("createdBefore"))
    return JobFilter(
        company_id,
        statuses,
        args.get("jobType") or None,
        args.get("sourceTaskId") or None,
        after,
        before,
    )


def body_filter(body: Any, company_id: str | None) -> tuple[JobFilter, bool]:
    """A bulk action's filter and its dryRun flag, from its JSON body (an object)."""
    fields: Mapping[str, Any] = require_object(body)
    check_fields(fields, BULK_FIELDS)
    raw = fields.get("status")
    if raw is None:
        statuses = None
    elif isinstance(raw, str):
        statuses = _statuses([raw])
    elif isinstance(raw, list) and raw and all(isinstance(s, str) for s in raw):
        statuses = _statuses(raw)
    else:
        raise bad_request("status must be a status, or a non-empty array of statuses")
    job_type = fields.get("jobType")
    if job_type is not None and (not isinstance(job_type, str) or not job_type):
        raise bad_request("jobType must be a non-empty string")
    dry_run = fields.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise bad_request("dryRun must be true or false")
    after = _time("createdAfter", fields.get("createdAfter"))
    before = _time("createdBefore", fields.get("createdBefore"))
    return JobFilter(company_id, statuses, job_type, None, after, before), dry_run
