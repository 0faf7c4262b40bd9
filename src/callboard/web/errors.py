"""HTTP errors: small exceptions that carry a status, a code and a message, turned
into `{"error": {"code", "message"}}` in one place (`app.py`)."""

from __future__ import annotations

import json
import logging

from ..errors import (
    AssetTooLarge,
    CallboardError,
    CompanyExists,
    Conflict,
    InvalidRequest,
    InvalidSchedule,
    NotFound,
    ScheduleExists,
    ShuttingDown,
    StorageFull,
    StorageUnavailable,
    StoreInUse,
    StoreUnavailable,
    UnknownJobType,
)

log = logging.getLogger("callboard.web")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def unauthorized(message: str = "a valid bearer token is required") -> ApiError:
    return ApiError(401, "unauthorized", message)


def forbidden(message: str = "this route needs the operator token") -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def error_body(error: ApiError) -> bytes:
    return json.dumps({"error": {"code": error.code, "message": error.message}}).encode()


def error_headers(error: ApiError) -> dict[str, str]:
    """Beside Content-Type: a 401's challenge, and the error's own (Allow, Retry-After)."""
    headers = {"WWW-Authenticate": 'Bearer realm="callboard"'} if error.status == 401 else {}
    headers.update(error.headers)
    return headers


def internal(method: str, path: str, error: Exception) -> ApiError:
    """A 500 for an error no handler expected, logged with its traceback."""
    # trio.Cancelled is a BaseException: it never gets here.
    log.error("unhandled error on %s %s", method, path, exc_info=error)
    return ApiError(500, "internal", "internal server error")


def from_domain(exc: CallboardError) -> ApiError:
    """The HTTP form of a domain error."""
    if isinstance(exc, UnknownJobType):
        return ApiError(422, "unknown_job_type", str(exc))
    if isinstance(exc, AssetTooLarge):
        return ApiError(413, "too_large", str(exc))
    if isinstance(exc, StorageFull):
        return ApiError(507, "insufficient_storage", str(exc))
    if isinstance(exc, InvalidSchedule):
        return ApiError(422, "invalid_schedule", str(exc))
    if isinstance(exc, InvalidRequest):
        return bad_request(str(exc))
    if isinstance(exc, NotFound):
        return not_found(str(exc))
    if isinstance(exc, CompanyExists):
        return ApiError(409, "company_exists", str(exc))
    if isinstance(exc, ScheduleExists):
        return ApiError(409, "schedule_exists", str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, ShuttingDown):
        return ApiError(503, "shutting_down", str(exc))
    if isinstance(exc, StorageUnavailable):
        log.warning("asset storage failed: %s", exc)
        return ApiError(503, "storage_unavailable", "asset storage is unavailable; try again")
    if isinstance(exc, StoreUnavailable | StoreInUse):
        return ApiError(503, "store_unavailable", "the job store is unavailable; try again")
    return ApiError(500, "internal", str(exc))
