"""`callboard dashboard`: the operator's live view in the terminal (callboard.tui).

Defaults to the local server and the operator token file in the data directory, so on
one machine it needs no flags. Exit codes: 0 after quitting, 2 when it could not
connect or authorise (the reason is on screen and repeated on stderr), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..client import DEFAULT_URL, AsyncClient
from ..config import SettingError
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_command,
    client_flags,
    fail,
    resolve_token,
)


def add_commands(commands: Any) -> None:
    dashboard = add_command(
        commands,
        "dashboard",
        "the operator's live dashboard in the terminal",
        "Watch every job as it happens: connection state, counts by status, a "
        "throughput sparkline, the live job table, workers and the event log. Keys: "
        "c cancel, r retry, f filter (several statuses at once), / search, Esc clear "
        "the filter, o/O sort by the next column/reverse (or click a header), u running "
        "first, n follow the newest job, p pause, Enter details, ? help, q quit. "
        "It reconnects by itself (with Last-Event-ID) when the connection drops.",
        [
            "callboard dashboard",
            "callboard dashboard --url http://10.0.0.5:8000 --token-file ~/.callboard-token",
        ],
    )
    client_flags(dashboard, json=False)
    dashboard.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..tui import DashboardApp

    url = args.url or os.environ.get("CALLBOARD_URL") or DEFAULT_URL
    try:
        token, why = resolve_token(args)
    except SettingError as exc:
        fail(str(exc))
        return EXIT_USAGE
    if token is None:
        fail(why)
        return EXIT_USAGE
    app = DashboardApp(AsyncClient(url, token))
    try:
        app.run()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if app.fatal:
        fail(app.fatal)
        return EXIT_USAGE
    return app.return_code or EXIT_OK
