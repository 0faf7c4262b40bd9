"""Companies, their tokens, the job types this node runs, and the operator's stats and
list of nodes."""

from __future__ import annotations

from quart import Blueprint, request

from ..jobs import JobStatus, check_max_running, check_name
from .auth import create_token
from .context import company_for, ctx, operator, principal
from .errors import bad_request, not_found
from .validation import check_fields, integral, parse_json, require_object

admin = Blueprint("admin", __name__)


def _label(body: dict, field: str) -> str:
    return check_name(field, body.get(field))


@admin.post("/api/companies")
async def create_company():
    await operator()
    body = require_object(parse_json(await request.get_data()))
    check_fields(body, {"name"})
    company = await ctx().rt.create_company(_label(body, "name"))
    return company.to_dict(), 201


@admin.get("/api/companies")
async def list_companies():
    who = await principal()
    companies = await ctx().rt.companies()
    if not who.is_operator:
        companies = [c for c in companies if c.id == who.company_id]
    return {"items": [c.to_dict() for c in companies], "nextCursor": None}


@admin.get("/api/companies/<company_id>")
async def get_company(company_id: str):
    who = await principal()
    company = await ctx().rt.get_company(await company_for(who, company_id))
    if company is None:
        raise not_found(f"company {company_id!r} not found")
    return company.to_dict()


@admin.patch("/api/companies/<company_id>")
async def update_company(company_id: str):
    who = await operator()
    company = await company_for(who, company_id)
    body = require_object(parse_json(await request.get_data()))
    check_fields(body, {"maxRunning"})
    if "maxRunning" not in body:
        raise bad_request("give maxRunning: an integer of at least 1, or null for no cap")
    # InvalidRequest (400) and CompanyNotFound (404) become JSON in web/errors.py.
    cap = check_max_running(integral(body["maxRunning"]))  # 9.0 is the integer 9 in JSON
    updated = await ctx().rt.set_company_max_running(company, cap)
    return updated.to_dict()


@admin.post("/api/companies/<company_id>/tokens")
async def create_company_token(company_id: str):
    who = await operator()
    company = await company_for(who, company_id)
    body = require_object(parse_json(await request.get_data()))
    check_fields(body, {"label"})
    rt = ctx().rt
    secret, record = await create_token(rt.store, company, _label(body, "label"), rt.now())
    return {**record.to_dict(), "token": secret}, 201


@admin.get("/api/companies/<company_id>/tokens")
async def list_company_tokens(company_id: str):
    who = await operator()
    company = await company_for(who, company_id)
    tokens = await ctx().rt.store.list_tokens(company)
    return {"items": [t.to_dict() for t in tokens], "nextCursor": None}


@admin.delete("/api/companies/<company_id>/tokens/<token_id>")
async def revoke_company_token(company_id: str, token_id: str):
    who = await operator()
    company = await company_for(who, company_id)
    rt = ctx().rt
    record = await rt.store.revoke_token(token_id, company, rt.now())
    ctx().auth.forget(record.prefix)
    return "", 204


@admin.get("/api/job-types")
async def list_job_types():
    # Any token: a company's program may check what it can submit, and the list holds
    # nothing of another company's.
    await principal()
    items = [t.to_dict() for t in ctx().rt.job_type_details()]
    return {"items": items, "nextCursor": None}


@admin.get("/api/nodes")
async def list_nodes():
    await operator()
    nodes = await ctx().rt.live_nodes()
    return {"items": [n.to_dict() for n in nodes], "nextCursor": None}


@admin.get("/api/stats")
async def stats():
    await operator()
    rt = ctx().rt
    counts = await rt.counts()
    loads = await rt.company_loads()
    companies = await rt.companies()
    snapshot = rt.statistics()
    return {
        "counts": {status.value: counts.get(status, 0) for status in JobStatus},
        # Every node's running and queued jobs of each company, with its cap.
        "companies": [
            {
                "id": c.id,
                "name": c.name,
                "running": loads.get(c.id, (0, 0))[0],
                "queued": loads.get(c.id, (0, 0))[1],
                "maxRunning": c.max_running,
            }
            for c in companies
        ],
        "node": snapshot.lease_owner,
        "accepting": snapshot.accepting,
        "workers": [
            {
                "name": w.name,
                "jobId": w.job_id,
                "jobType": w.job_type,
                "runningSeconds": w.running_for,
                "completed": w.completed,
            }
            for w in snapshot.workers
        ],
        "throughput": {
            "completed": sum(w.completed for w in snapshot.workers),
            "claims": snapshot.dispatcher.claims,
            "dispatched": snapshot.dispatcher.dispatched,
            "startedOnSubmit": snapshot.dispatcher.started_on_submit,
        },
        "events": {
            "published": snapshot.broker.published,
            "subscribers": snapshot.broker.subscribers,
            "dropped": snapshot.broker.dropped,
        },
    }
