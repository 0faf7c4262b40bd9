"""Bulk actions on jobs: retry or cancel every job a filter matches (a company's, or
every company's for the operator), and the operator's prune of finished jobs. Each
answers with counts (`store.bulk.BulkReport`, `PruneReport`); `dryRun` only
counts."""

from __future__ import annotations

from quart import Blueprint, request

from .context import company_for, ctx, operator, principal
from .errors import bad_request
from .job_filters import body_filter
from .validation import check_fields, parse_json, require_object

bulk = Blueprint("bulk", __name__)


async def _body() -> object:
    """The JSON body; no body at all is an empty object (every field is optional but
    the prune's age), a JSON null is not."""
    raw = await request.get_data()
    return parse_json(raw) if raw.strip() else {}


async def _act(action: str, company_id: str | None) -> dict:
    wanted, dry_run = body_filter(await _body(), company_id)
    rt = ctx().rt
    act = rt.bulk_retry if action == "retry" else rt.bulk_cancel
    return (await act(wanted, dry_run=dry_run)).to_dict()


@bulk.post("/api/companies/<company_id>/content-jobs/bulk-retry")
async def bulk_retry(company_id: str):
    return await _act("retry", await company_for(await principal(), company_id))


@bulk.post("/api/companies/<company_id>/content-jobs/bulk-cancel")
async def bulk_cancel(company_id: str):
    return await _act("cancel", await company_for(await principal(), company_id))


@bulk.post("/api/content-jobs/bulk-retry")
async def bulk_retry_all():
    await operator()
    return await _act("retry", None)


@bulk.post("/api/content-jobs/bulk-cancel")
async def bulk_cancel_all():
    await operator()
    return await _act("cancel", None)


@bulk.post("/api/content-jobs/prune")
async def prune():
    """Operator: delete the jobs that finished more than olderThanSeconds ago, with
    their events. Served by the node because the embedded SQLite store is locked to
    the process serving it."""
    await operator()
    body = require_object(await _body())
    check_fields(body, {"olderThanSeconds", "dryRun"})
    older = body.get("olderThanSeconds")
    if (
        isinstance(older, bool)
        or not isinstance(older, int | float)
        or not 0 <= older <= 100 * 365 * 86400
    ):
        raise bad_request("olderThanSeconds is required: a number of seconds from 0 to 100 years")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise bad_request("dryRun must be true or false")
    return (await ctx().rt.prune_jobs(float(older), dry_run=dry_run)).to_dict()
