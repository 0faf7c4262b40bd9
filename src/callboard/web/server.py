"""The web server as a supervised child of the runtime: Hypercorn's trio worker
serving the Quart-Trio app in the same trio run as the actors.

It stops when the node drains (`rt.draining`): Hypercorn stops accepting, open SSE
streams end (the broker closes them), in-flight requests get `graceful_timeout`.
The child is TRANSIENT: returning after a drain is its normal end, a crash restarts it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.logging import Logger as HyperLogger
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio import serve

from ..config import LISTEN_BACKLOG
from ..running_board import RunningBoard
from .app import create_app
from .auth import ensure_operator_token
from .descriptors import quiet_accept_errors, raise_open_files_limit
from .early_answers import EarlyAnswerGuard

log = logging.getLogger("callboard.web")


async def _http1_only(self: object, event: object) -> None:
    """Replaces Hypercorn's switch from HTTP/1.1 to HTTP/2 on a plain (not TLS)
    listener (an `Upgrade: h2c` request, or the `PRI *` preface of prior knowledge).
    Its HTTP/2 code crashes on a request answered before its body arrived (hypercorn
    issue 329, fixed in no release yet), and a crash of the web server drops every
    stream and request of the node. Such requests are served as HTTP/1.1 or refused."""


H11Protocol._check_protocol = _http1_only  # type: ignore[method-assign]

# No query string in the access log: SSE clients may carry ?token= there.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'


class _AccessLogger(HyperLogger):
    """Hypercorn passes every atom as the access record's `args`: the query string
    (`?token=`), each request header (`Authorization`) and the whole environment. A
    handler that keeps `args` (JSON logging, error trackers) would store them; keep
    only the atoms the format prints. Hypercorn also builds all of them (a copy of
    every header and environment variable) for each request even when the line is
    not logged: here nothing is built unless the access logger is enabled, and only
    the seven atoms the format uses."""

    async def access(self, request, response, request_time):  # type: ignore[no-untyped-def]
        logger = self.access_logger
        if logger is None or not logger.isEnabledFor(logging.INFO):
            return
        logger.info(self.access_log_format, self.atoms(request, response, request_time))

    def atoms(self, request, response, request_time):  # type: ignore[no-untyped-def]
        client = request.get("client")
        size = "-"
        status = "-"
        if response is not None:
            status = str(response["status"])
            for name, value in response.get("headers", ()):
                if name.lower() == b"content-length":
                    size = value.decode("latin1")
        return {
            "h": f"{client[0]}:{client[1]}" if client and len(client) == 2 else "-",
            "m": request.get("method", "GET"),
            "U": request["path"],
            "H": request.get("http_version", "ws"),
            "s": status,
            "b": size,
            "L": f"{request_time:.6f}",
        }


def hypercorn_config(bind: str) -> HyperConfig:
    config = HyperConfig()
    config.logger_class = _AccessLogger
    config.bind = [bind]
    config.accesslog = logging.getLogger("callboard.access")
    config.access_log_format = ACCESS_LOG_FORMAT
    config.errorlog = logging.getLogger("callboard.web")
    config.graceful_timeout = 5.0
    config.keep_alive_timeout = 30.0
    config.backlog = LISTEN_BACKLOG
    return config


class WebServer:
    name = "web"

    def __init__(self, rt: RunningBoard, bind: str | Callable[[], str] | None = None) -> None:
        """`bind` is HOST:PORT (default: the settings'), or a callable asked for it at
        each start (a restart after a crash may need a fresh one: `serve --processes`
        hands each start a copy of the inherited socket, `fd://N`)."""
        self._rt = rt
        self._settings = rt.settings
        self._bind = bind or rt.settings.bind
        self.app = create_app(rt)
        #: The addresses Hypercorn bound (with the real port when asked for port 0).
        self.bound: list[str] = []
        self._stopped = trio.Event()
        # The node's drain waits for our graceful shutdown (last responses out).
        rt.wait_on_drain(self._stopped.wait)

    async def run(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self._rt.draining.is_set():
            self._stopped.set()
            task_status.started([])
            return
        try:
            raise_open_files_limit()
            quiet_accept_errors()
            token_file = self._settings.operator_token_file
            if await ensure_operator_token(self._rt.store, token_file, self._rt.now()):
                log.info("the operator token is in %s", token_file)
            await serve(
                EarlyAnswerGuard(self.app),
                hypercorn_config(self._bind() if callable(self._bind) else self._bind),
                shutdown_trigger=self._rt.draining.wait,
                task_status=_ReportBinds(self, task_status),  # type: ignore[arg-type]
            )
        finally:
            self._stopped.set()


class _ReportBinds:
    """Hypercorn reports the addresses it bound through task_status: keep them (the
    real port when port 0 was asked for), log them, and pass them on."""

    def __init__(self, server: WebServer, outer: trio.TaskStatus[list[str]]) -> None:
        self._server = server
        self._outer = outer

    def started(self, binds: list[str]) -> None:
        self._server.bound = list(binds)
        log.info("serving the API on %s", ", ".join(binds))
        self._outer.started(list(binds))
