"""Liveness, readiness, metrics and the OpenAPI document: no token needed (bind to
loopback or put them behind your proxy)."""

from __future__ import annotations

from quart import Blueprint, Response

from ..errors import StoreUnavailable
from .context import ctx
from .metrics import CONTENT_TYPE
from .openapi import openapi_document
from .readiness import readiness

system = Blueprint("system", __name__)


@system.get("/healthz")
async def healthz():
    return {"status": "ok"}


@system.get("/readyz")
async def readyz():
    web = ctx()
    return await readiness(web.rt, web.storage_check)


@system.get("/metrics")
async def metrics():
    try:
        body = await ctx().metrics.render()
    except StoreUnavailable:
        return Response("# store unavailable\n", status=503, content_type=CONTENT_TYPE)
    return Response(body, status=200, content_type=CONTENT_TYPE)


@system.get("/openapi.json")
async def openapi():
    return openapi_document(ctx().rt.job_types)
