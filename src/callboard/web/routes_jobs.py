"""Content jobs: submit (one or a batch), list (a company's, or every company's for the
operator), read, cancel, retry."""

from __future__ import annotations

from quart import Blueprint, request
from werkzeug.exceptions import MethodNotAllowed

from .context import company_for, ctx, job_for, operator, principal
from .job_filters import query_filter
from .submits import submit
from .validation import check_query, query_int

jobs = Blueprint("jobs", __name__)

_LIST_QUERY = {
    "status",
    "jobType",
    "sourceTaskId",
    "createdAfter",
    "createdBefore",
    "limit",
    "cursor",
}


# Served by `submits.SubmitRoutes` ahead of Quart; these views are the same submit for
# the requests it passes on (and what the URL map and the OpenAPI description know).
@jobs.post("/api/companies/<company_id>/content-jobs")
async def submit_one(company_id: str):
    authorization = request.headers.get("Authorization", "")
    return await submit(ctx(), authorization, company_id, request.get_data, batch=False), 202


@jobs.post("/api/companies/<company_id>/content-jobs/batch")
async def submit_batch(company_id: str):
    authorization = request.headers.get("Authorization", "")
    return await submit(ctx(), authorization, company_id, request.get_data, batch=True), 202


@jobs.get("/api/companies/<company_id>/content-jobs")
async def list_jobs(company_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    return await _page(company)


async def _page(company_id: str | None) -> dict:
    args = request.args
    check_query(args, _LIST_QUERY)
    wanted = query_filter(args, company_id)
    page = await ctx().rt.list(
        wanted.company_id,
        wanted.statuses,
        limit=query_int(args, "limit", 50, 1, 500),
        cursor=args.get("cursor"),  # "" is refused, not read as the first page
        job_type=wanted.job_type,
        source_task_id=wanted.source_task_id,
        created_after=wanted.created_after,
        created_before=wanted.created_before,
    )
    return {"items": [job.to_dict() for job in page.items], "nextCursor": page.next_cursor}


@jobs.get("/api/content-jobs")
async def list_all_jobs():
    """Operator: every company's jobs in one newest-first list."""
    await operator()
    return await _page(None)


#: The POST-only paths beside a job's: a GET of one is a wrong method (405), not an
#: unknown job id (the `<job_id>` rule would otherwise take it).
_COMPANY_ACTIONS = {"batch", "bulk-retry", "bulk-cancel"}
_OPERATOR_ACTIONS = {"bulk-retry", "bulk-cancel", "prune"}


@jobs.get("/api/companies/<company_id>/content-jobs/<job_id>")
async def get_job(company_id: str, job_id: str):
    if job_id in _COMPANY_ACTIONS:
        raise MethodNotAllowed(["POST"])
    who = await principal()
    company = await company_for(who, company_id)
    return (await job_for(who, job_id, company)).to_dict()


@jobs.get("/api/content-jobs/<job_id>")
async def get_job_by_id(job_id: str):
    if job_id in _OPERATOR_ACTIONS:
        raise MethodNotAllowed(["POST"])
    who = await principal()
    return (await job_for(who, job_id)).to_dict()


@jobs.post("/api/companies/<company_id>/content-jobs/<job_id>/cancel")
async def cancel(company_id: str, job_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    job = await job_for(who, job_id, company)
    return (await ctx().rt.cancel(job.id)).to_dict(), 202


@jobs.post("/api/companies/<company_id>/content-jobs/<job_id>/retry")
async def retry(company_id: str, job_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    job = await job_for(who, job_id, company)
    return (await ctx().rt.retry(job.id)).to_dict(), 202
