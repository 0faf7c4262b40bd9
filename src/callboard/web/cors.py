"""CORS: the browser origins allowed to call the API (`Settings.cors_origins`), and
the headers that tell a browser so, on a preflight and on every answer."""

from __future__ import annotations

from collections.abc import Collection

_ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, Range, If-None-Match, If-Range"
# Read by a web app downloading an asset (name, partial range, version).
_EXPOSE_HEADERS = "Content-Disposition, Content-Range, ETag"
_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"


def applies(path: str) -> bool:
    """Only the API answers other origins; /healthz, /metrics and the docs do not."""
    return path.startswith("/api")


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": _ALLOW_METHODS,
        "Access-Control-Allow-Headers": _ALLOW_HEADERS,
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def answer_headers(origin: str | None, origins: Collection[str], path: str) -> dict[str, str]:
    """The headers an answer to `origin` carries (none for an origin not allowed)."""
    if origin is None or origin not in origins or not applies(path):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": _EXPOSE_HEADERS,
        "Vary": "Origin",
    }
