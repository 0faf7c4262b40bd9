"""Schedules: create, list, read, change (pause and resume included), delete.

A company token manages its own company's schedules; the operator token any
company's. Another company's schedule answers 404, as an unknown id does."""

from __future__ import annotations

from quart import Blueprint, request

from ..errors import ScheduleNotFound
from ..jobs import Schedule
from .context import company_for, ctx, is_uuid, principal
from .validation import check_query, parse_json, query_int, schedule_changes

schedules = Blueprint("schedules", __name__)


async def _schedule(company_id: str, schedule_id: str) -> Schedule:
    if not is_uuid(schedule_id):
        raise ScheduleNotFound(schedule_id)
    return await ctx().rt.get_schedule(schedule_id, company_id)


@schedules.post("/api/companies/<company_id>/schedules")
async def create_schedule(company_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    changes = schedule_changes(parse_json(await request.get_data()), new=True)
    name = changes.pop("name")
    job_type = changes.pop("job_type")
    made = await ctx().rt.create_schedule(company, name, job_type, **changes)
    return made.to_dict(), 201


@schedules.get("/api/companies/<company_id>/schedules")
async def list_schedules(company_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    check_query(request.args, {"limit", "cursor"})
    page = await ctx().rt.schedules(
        company,
        limit=query_int(request.args, "limit", 50, 1, 500),
        cursor=request.args.get("cursor"),
    )
    return {"items": [s.to_dict() for s in page.items], "nextCursor": page.next_cursor}


@schedules.get("/api/companies/<company_id>/schedules/<schedule_id>")
async def get_schedule(company_id: str, schedule_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    return (await _schedule(company, schedule_id)).to_dict()


@schedules.patch("/api/companies/<company_id>/schedules/<schedule_id>")
async def update_schedule(company_id: str, schedule_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    changes = schedule_changes(parse_json(await request.get_data()), new=False)
    await _schedule(company, schedule_id)
    updated = await ctx().rt.update_schedule(schedule_id, company_id=company, **changes)
    return updated.to_dict()


@schedules.delete("/api/companies/<company_id>/schedules/<schedule_id>")
async def delete_schedule(company_id: str, schedule_id: str):
    who = await principal()
    company = await company_for(who, company_id)
    await _schedule(company, schedule_id)
    await ctx().rt.delete_schedule(schedule_id, company)
    return "", 204
