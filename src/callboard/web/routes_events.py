"""The SSE routes: one job, one company, everything (operator).

Each route first works out a plan (who is asking, where the stream starts, what to
send first); the response then streams it. If the store is unreachable while the
plan is made, the route still answers 200 text/event-stream and retries the plan
inside the stream, because a browser's EventSource gives up for good on a 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import trio
from quart import Blueprint, Response, copy_current_request_context, request

from ..errors import CallboardError, StoreUnavailable
from ..jobs import JobEvent
from ..running_board import RunningBoard
from .context import company_for, ctx, job_for, principal
from .direct_send import DirectStreams
from .errors import ApiError, bad_request, from_domain
from .sse import HEADERS, RETRY_MS, comment, frame, stream_events
from .validation import MAX_LAST_EVENT_ID, check_query

events = Blueprint("events", __name__)


@events.record_once
def _direct_streams(state: Any) -> None:
    # The streams' body chunks skip most of Hypercorn's per-send work (direct_send.py).
    state.app.asgi_app = DirectStreams(state.app.asgi_app)


@dataclass(slots=True)
class Plan:
    company_id: str | None = None
    job_id: str | None = None
    after: int | None = None
    first: list[bytes] = field(default_factory=list)
    operator_feed: bool = False
    end_after: Callable[[JobEvent], bool] | None = None
    finished: bool = False  # nothing to follow: end after `first`


def last_event_id() -> int | None:
    """The header wins over the query string: on a reconnect a browser sends the
    header and repeats the (stale) `?lastEventId=` it was first opened with. Both are
    checked, as both are ids the server once gave; so is the query, which holds
    nothing but these two."""
    check_query(request.args, {"token", "lastEventId"})
    header = _event_id(request.headers.get("Last-Event-ID"), empty_is_none=True)
    query = _event_id(request.args.get("lastEventId"), empty_is_none=False)
    return header if header is not None else query


def _event_id(raw: str | None, *, empty_is_none: bool) -> int | None:
    """An empty header is how EventSource says "no id yet" (it sends what the last
    `id:` field held), so it means none; an empty `?lastEventId=` is a caller's own
    mistake (the document says integer), so it is refused like any other non-id."""
    if raw is None or (empty_is_none and raw.strip() == ""):
        return None
    text = raw.strip()
    # At most 19 digits before int(): longer text is out of range anyway, and Python
    # refuses to convert more than 4,300.
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_LAST_EVENT_ID:
        raise bad_request(
            f"Last-Event-ID must be an integer from 0 to {MAX_LAST_EVENT_ID}, got {raw!r}"
        )
    return int(text)


async def gap_notice(after: int | None) -> list[bytes]:
    if not after:
        return []
    pruned = await ctx().rt.store.pruned_through()
    if after >= pruned:
        return []
    return [
        frame(
            {
                "lastEventId": after,
                "prunedThrough": pruned,
                "message": "events after your Last-Event-ID are past the retention window "
                "and were pruned; reload the current state",
            },
            event="stream.gap",
        )
    ]


def _terminal(event: JobEvent) -> bool:
    return event.terminal


async def _respond(make_plan: Callable[[], Awaitable[Plan]]) -> Response:
    try:
        plan: Plan | None = await make_plan()
    except StoreUnavailable:
        plan = None
    if plan is not None and plan.finished and not plan.first:
        return Response("", status=204)
    # The plan may be retried inside the stream, which needs the request context: only
    # that call gets it. (Not `stream_with_context`: its wrapper generator, closed when
    # the client goes, leaves ours to the garbage collector, subscription and all.)
    body = _body(ctx().rt, ctx().encode, plan, copy_current_request_context(make_plan))
    response = Response(body, status=200, headers=HEADERS)
    response.timeout = None  # Quart's response timeout would cut a long stream
    return response


async def _body(
    rt: RunningBoard,
    encode: Callable[[Any], bytes],
    plan: Plan | None,
    make_plan: Callable[[], Awaitable[Plan]],
) -> AsyncIterator[bytes]:
    retry = f"retry: {RETRY_MS}\n".encode()
    if plan is None:
        yield retry + b"\n"
    elif plan.first:
        # The first message carries retry: along with the first event.
        plan.first[0] = retry + plan.first[0]
    else:
        plan.first.append(retry + b"\n")
    delay = 0.5
    while plan is None:
        # The store was unreachable when the stream opened: keep the client with us.
        yield comment("store unavailable, waiting")
        with trio.move_on_after(delay):
            await rt.draining.wait()
        if rt.draining.is_set():
            return
        delay = min(delay * 2, 15.0)
        try:
            plan = await make_plan()
        except StoreUnavailable:
            continue
        except (ApiError, CallboardError) as exc:
            error = exc if isinstance(exc, ApiError) else from_domain(exc)
            yield frame({"error": {"code": error.code, "message": error.message}}, event="error")
            return
    if plan.finished:
        for chunk in plan.first:
            yield chunk
        return

    def open_stream() -> Any:
        return rt.subscribe(
            company_id=plan.company_id,
            job_id=plan.job_id,
            after_event_id=plan.after,
            include_runtime_events=plan.operator_feed,
        )

    # aclosing: when Quart closes this generator (the client went), the inner one
    # closes at once and releases the broker subscription.
    async with aclosing(
        stream_events(
            open_stream,
            stopping=rt.draining,
            first=plan.first,
            end_after=plan.end_after,
            encode=encode,
        )
    ) as chunks:
        async for chunk in chunks:
            yield chunk


async def _feed_plan(plan: Plan, resume: int | None) -> Plan:
    """A feed resumes after `resume`; a fresh one starts at the store's current head,
    and says so in its first message (`id:` with no data sets a client's last event
    id without dispatching an event), so a client that drops before its first event
    resumes from there instead of losing what came in between."""
    if resume is not None:
        plan.after, plan.first = resume, await gap_notice(resume)
        return plan
    plan.after = await ctx().rt.store.last_event_id()
    plan.first = [f"id: {plan.after}\n\n".encode()]
    return plan


@events.get("/api/companies/<company_id>/content-jobs/<job_id>/events")
async def job_events(company_id: str, job_id: str):
    resume = last_event_id()

    async def make_plan() -> Plan:
        who = await principal(allow_query=True)
        company = await company_for(who, company_id)
        job = await job_for(who, job_id, company)
        store = ctx().rt.store
        plan = Plan(company_id=company, job_id=job.id, end_after=_terminal)
        if resume is None:
            latest = await store.latest_event(job.id)
            if latest is not None:
                plan.first.append(ctx().encode(latest))
                plan.after = latest.id
                plan.finished = latest.terminal
            else:
                plan.after = 0
            return plan
        plan.first = await gap_notice(resume)
        plan.after = resume
        if job.terminal:
            # Nothing new can come: replay what is left, or 204 so the browser stops.
            missed = await store.events_after(resume, job_id=job.id, limit=1000)
            plan.first += [ctx().encode(e) for e in missed]
            plan.finished = True
        return plan

    return await _respond(make_plan)


@events.get("/api/companies/<company_id>/events")
async def company_events(company_id: str):
    resume = last_event_id()

    async def make_plan() -> Plan:
        who = await principal(allow_query=True)
        company = await company_for(who, company_id)
        return await _feed_plan(Plan(company_id=company), resume)

    return await _respond(make_plan)


@events.get("/api/events")
async def operator_events():
    resume = last_event_id()

    async def make_plan() -> Plan:
        who = await principal(allow_query=True)
        who.require_operator()
        return await _feed_plan(Plan(operator_feed=True), resume)

    return await _respond(make_plan)
