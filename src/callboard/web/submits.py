"""Submitting jobs over HTTP: what a submit does, and the plain ASGI route that serves
the two submit routes ahead of Quart.

`POST /api/companies/<company>/content-jobs` (one job) and `.../content-jobs/batch`
are the requests a busy node takes most. Quart is about a third of what a bare JSON
route costs on this stack (its request and response objects, the request and app
contexts, URL matching, the before- and after-request hooks: `bench/http_front.py`
measures the same route answering about 1.45 times the requests in plain ASGI), and
on a node whose store is elsewhere that, with Hypercorn's own share, is what limits
the submits a core takes. `SubmitRoutes` wraps the app's ASGI callable and answers these
two routes itself; every other request, and any of these it does not match exactly,
goes to Quart unchanged. The Quart views (`routes_jobs.py`) stay: they are what the
URL map and the OpenAPI description know, and they call the same `submit` below, so
both ways give the same answers, byte for byte in status, headers and body.

What the plain route keeps of Quart's behaviour, each on purpose:
- the token is checked and the company resolved before the body is read, so a client
  without a valid token never has its body read (the early-answer guard around the
  app drains or closes, as for any early answer);
- the body limit (1 MiB) is checked against Content-Length first, then as it arrives;
- errors are the app's JSON errors (the same builders), an unexpected one a logged 500;
- an allowed browser origin gets the same CORS headers;
- a client that goes away before its body has arrived gets nothing written, as when
  Quart cancels the view. Once the body is in, the submit runs to its end (a grouped
  write is shared with other requests and runs shielded anyway).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import CallboardError
from ..jobs import Job, iso
from . import cors
from .context import WebContext, token_in
from .errors import ApiError, error_body, error_headers, from_domain, internal
from .validation import MAX_BODY_BYTES, batch_specs, body_too_large, job_spec, parse_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def submit(
    web: WebContext,
    authorization: str,
    company_id: str,
    read_body: Callable[[], Awaitable[bytes]],
    *,
    batch: bool,
) -> dict[str, Any]:
    """Check the token and the company, read the body, take a turn, validate and write;
    the 202's JSON. Raises ApiError or CallboardError for the error answers."""
    who = await web.auth.authenticate(token_in(authorization))
    company = await web.company_for(who, company_id)
    body = await read_body()  # before the turn: a slow client must not hold one
    async with web.backlog.turn():
        payload = parse_json(body)
        specs = batch_specs(payload) if batch else [job_spec(payload)]
        await web.backlog.admit()
        submitted = await web.rt.submit_many(company, specs)
    return accepted(submitted, batch=batch)


def accepted_job(job: Job) -> dict[str, Any]:
    return {"jobId": job.id, "status": str(job.status), "createdAt": iso(job.created_at)}


def accepted(submitted: list[Job], *, batch: bool) -> dict[str, Any]:
    if batch:
        return {"jobs": [accepted_job(job) for job in submitted]}
    return accepted_job(submitted[0])


_PREFIX = "/api/companies/"
_ROUTES = {"content-jobs": False, "content-jobs/batch": True}  # the rest of the path: batch?


def _route(scope: Scope) -> tuple[str, bool] | None:
    """(company id, batch?) for a request this route serves; None for the app."""
    if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("root_path"):
        return None
    path: str = scope.get("path", "")
    if not path.startswith(_PREFIX):
        return None
    company_id, _, rest = path[len(_PREFIX) :].partition("/")
    batch = _ROUTES.get(rest)
    if not company_id or batch is None:
        return None
    return company_id, batch


class _ClientGone(Exception):
    """The client disconnected before its body arrived."""


class SubmitRoutes:
    """ASGI middleware: the submit routes answered in plain ASGI (see the module
    docstring), the app unchanged otherwise."""

    def __init__(self, app: ASGIApp, web: WebContext, origins: frozenset[str]) -> None:
        self.app = app
        self._web = web
        self._origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        company_id, batch = route
        authorization = origin = None
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"origin" and origin is None:
                origin = value.decode("latin-1")
            elif name == b"content-length" and declared is None and value.isdigit():
                declared = int(value)  # h11 refuses a malformed one before we get here

        async def read_body() -> bytes:
            return await _read_body(receive, declared)

        headers: dict[str, str] = {}
        try:
            answer = await submit(
                self._web, authorization or "", company_id, read_body, batch=batch
            )
            status, body = 202, json.dumps(answer, separators=(",", ":")).encode() + b"\n"
        except _ClientGone:
            return
        except Exception as exc:
            if isinstance(exc, ApiError):
                error = exc
            elif isinstance(exc, CallboardError):
                error = from_domain(exc)
            else:
                error = internal("POST", scope["path"], exc)
            status, body, headers = error.status, error_body(error), error_headers(error)
        headers.update(cors.answer_headers(origin, self._origins, scope["path"]))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *((name.lower().encode(), value.encode()) for name, value in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, declared: int | None) -> bytes:
    if declared is not None and declared > MAX_BODY_BYTES:
        raise body_too_large()
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise body_too_large()
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
