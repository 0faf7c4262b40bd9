"""The HTTP API and SSE streams (DESIGN.md section 4), served by Hypercorn inside the
runtime's supervision tree."""

from .app import create_app
from .server import WebServer

__all__ = ["WebServer", "create_app"]
