"""The Quart-Trio app: blueprints, errors as JSON in one place, CORS."""

from __future__ import annotations

import logging

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..errors import CallboardError
from ..running_board import RunningBoard
from . import cors
from .auth import Authenticator
from .backlog import SUBMIT_TURNS, Backlog
from .body import FlowControlledConnection, FlowControlledRequest
from .context import WebContext
from .errors import ApiError, error_body, error_headers, from_domain, internal
from .metrics import Metrics
from .readiness import StorageCheck
from .routes_admin import admin
from .routes_assets import assets
from .routes_bulk import bulk
from .routes_events import events
from .routes_jobs import jobs
from .routes_schedules import schedules
from .routes_system import system
from .submits import SubmitRoutes
from .validation import MAX_BODY_BYTES, body_too_large

log = logging.getLogger("callboard.web")


def error_response(error: ApiError) -> Response:
    response = Response(error_body(error), status=error.status, content_type="application/json")
    response.headers.update(error_headers(error))
    return response


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
    web = app.extensions["callboard"] = WebContext(
        rt=rt,
        auth=Authenticator(rt.store),
        settings=settings,
        metrics=Metrics(rt, backlog),
        backlog=backlog,
        storage_check=StorageCheck(rt.storage.check),
    )
    for blueprint in (jobs, bulk, assets, admin, events, system, schedules):
        app.register_blueprint(blueprint)
    origins = frozenset(settings.cors_origins)
    app.asgi_app = SubmitRoutes(app.asgi_app, web, origins)  # type: ignore[method-assign]

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(CallboardError)
    async def domain_error(error: CallboardError) -> Response:
        return error_response(from_domain(error))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 413:
            return error_response(body_too_large())
        codes = {404: "not_found", 405: "method_not_allowed"}
        headers = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            # RFC 9110 section 15.5.6: a 405 says which methods the resource has.
            headers["Allow"] = ", ".join(sorted(set(error.valid_methods) | {"OPTIONS"}))
        message = error.description or error.name
        return error_response(ApiError(status, codes.get(status, "http_error"), message, headers))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        return error_response(internal(request.method, request.path, error))

    @app.before_request
    async def preflight() -> Response | None:
        if request.method != "OPTIONS" or not cors.applies(request.path):
            return None
        origin = request.headers.get("Origin")
        if origin is None or origin not in origins:
            return error_response(ApiError(403, "cors", "this origin may not call the API"))
        return Response("", status=204, headers=cors.preflight_headers(origin))

    @app.after_request
    async def cors_answer(response: Response) -> Response:
        response.headers.update(
            cors.answer_headers(request.headers.get("Origin"), origins, request.path)
        )
        return response

    return app
