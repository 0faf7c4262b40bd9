"""The Quart-Trio app: blueprints, errors as JSON in one place, CORS."""

from __future__ import annotations

import logging

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..errors import CallboardError
from ..running_board import RunningBoard
from .auth import Authenticator
from .backlog import SUBMIT_TURNS, Backlog
from .body import FlowControlledConnection, FlowControlledRequest
from .context import WebContext
from .errors import ApiError, from_domain
from .metrics import Metrics
from .readiness import StorageCheck
from .routes_admin import admin
from .routes_assets import assets
from .routes_bulk import bulk
from .routes_events import events
from .routes_jobs import jobs
from .routes_schedules import schedules
from .routes_system import system
from .validation import MAX_BODY_BYTES

log = logging.getLogger("callboard.web")

_CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID, Range, If-None-Match, If-Range"
# Read by a web app downloading an asset (name, partial range, version).
_CORS_EXPOSE = "Content-Disposition, Content-Range, ETag"
_CORS_METHODS = "GET, POST, DELETE, OPTIONS"


def error_response(error: ApiError) -> Response:
    response = Response(
        _json_bytes({"error": {"code": error.code, "message": error.message}}),
        status=error.status,
        content_type="application/json",
    )
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="callboard"'
    response.headers.update(error.headers)
    return response


def _json_bytes(payload: object) -> bytes:
    import json

    return json.dumps(payload).encode()


def create_app(rt: RunningBoard) -> QuartTrio:
    settings = rt.settings
    # No static folder: Quart would otherwise add an undocumented /static/<path> route.
    app = QuartTrio("callboard", static_folder=None)
    # Bodies flow with backpressure, and the upload route may raise its own limit.
    app.request_class = FlowControlledRequest
    app.asgi_http_class = FlowControlledConnection  # type: ignore[assignment]
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    backlog = Backlog(
        rt, settings.max_queued or 0, turns=SUBMIT_TURNS if settings.workers > 0 else 0
    )
    app.extensions["callboard"] = WebContext(
        rt=rt,
        auth=Authenticator(rt.store),
        settings=settings,
        metrics=Metrics(rt, backlog),
        backlog=backlog,
        storage_check=StorageCheck(rt.storage.check),
    )
    for blueprint in (jobs, bulk, assets, admin, events, system, schedules):
        app.register_blueprint(blueprint)
    origins = set(settings.cors_origins)

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(CallboardError)
    async def domain_error(error: CallboardError) -> Response:
        return error_response(from_domain(error))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        message = error.description or error.name
        if status == 413:
            message = f"the body is larger than the {MAX_BODY_BYTES} bytes (1 MiB) limit"
        headers = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            # RFC 9110 section 15.5.6: a 405 says which methods the resource has.
            headers["Allow"] = ", ".join(sorted(set(error.valid_methods) | {"OPTIONS"}))
        return error_response(ApiError(status, codes.get(status, "http_error"), message, headers))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        # trio.Cancelled is a BaseException: it never reaches this handler.
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
        return error_response(ApiError(500, "internal", "internal server error"))

    @app.before_request
    async def preflight() -> Response | None:
        if request.method != "OPTIONS" or not request.path.startswith("/api"):
            return None
        origin = request.headers.get("Origin")
        if origin is None or origin not in origins:
            return error_response(ApiError(403, "cors", "this origin may not call the API"))
        return Response(
            "",
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": _CORS_METHODS,
                "Access-Control-Allow-Headers": _CORS_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    @app.after_request
    async def cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is not None and origin in origins and request.path.startswith("/api"):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE
            response.headers["Vary"] = "Origin"
        return response

    return app
