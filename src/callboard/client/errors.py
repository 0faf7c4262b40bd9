"""The client's typed errors: each carries the HTTP `status` (0 when there was no
answer), the server's error `code` and its `message`."""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """An error answer from the server (or no answer at all, `status` 0)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class InvalidRequest(ClientError):
    """400 (malformed input) or 422 (unknown job type); also a call the client cannot
    make as asked (status 0), such as no company named when the token sees several."""


class Unauthorized(ClientError):
    pass


class Forbidden(ClientError):
    pass


class NotFound(ClientError):
    pass


class Conflict(ClientError):
    pass


class TooLarge(ClientError):
    pass


class Unavailable(ClientError):
    pass


class ConnectionFailed(ClientError):
    """No answer: the server is down, the address is wrong, or a stream could not be
    re-established."""


class WaitTimeout(ClientError, TimeoutError):
    """`wait(job_id, timeout=...)` ran out of time; the job is still going. Also a
    `TimeoutError`, as `RunningBoard.wait` raises."""


class ChecksumMismatch(ClientError):
    """A download's bytes do not match the asset's sha256 or size; nothing was written."""


_BY_STATUS: dict[int, type[ClientError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: InvalidRequest,
    503: Unavailable,
}

# Error codes as sent inside an SSE `error` event (the status is not on the wire there).
_BY_CODE: dict[str, tuple[int, type[ClientError]]] = {
    "invalid_request": (400, InvalidRequest),
    "unauthorized": (401, Unauthorized),
    "forbidden": (403, Forbidden),
    "not_found": (404, NotFound),
    "conflict": (409, Conflict),
    "store_unavailable": (503, Unavailable),
    "shutting_down": (503, Unavailable),
}


def error_for_code(code: str, message: str) -> ClientError:
    """The typed error for an `{"error": {code, message}}` that came without a status."""
    status, cls = _BY_CODE.get(code, (0, ClientError))
    return cls(status, code, message)


def raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"HTTP {response.status_code}: {response.text[:200]}"
    raise _BY_STATUS.get(response.status_code, ClientError)(response.status_code, code, message)


def decode_json(url: str, response: httpx.Response) -> Any:
    """The answer's JSON; an answer that is not JSON means the URL is not a callboard
    server (a usage error, like a wrong address)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise ConnectionFailed(
            response.status_code,
            "not_callboard",
            f"{url} did not answer like a callboard server "
            f"(HTTP {response.status_code}, {kind}); check --url",
        ) from None


def transport_error(url: str, exc: httpx.TransportError) -> ConnectionFailed:
    if isinstance(exc, httpx.TimeoutException):
        return ConnectionFailed(
            0, "timeout", f"no answer from {url} in time ({exc or 'timed out'})"
        )
    return ConnectionFailed(0, "connection_failed", f"cannot reach {url}: {exc}")
