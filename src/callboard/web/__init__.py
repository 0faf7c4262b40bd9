"""The HTTP API and SSE streams (docs/architecture.md, "HTTP and SSE"), served by
Hypercorn inside the runtime's supervision tree."""

from .app import create_app
from .server import WebServer

__all__ = ["WebServer", "create_app"]
