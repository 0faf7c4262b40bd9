"""`callboard dashboard`: the operator's live view in the terminal (callboard.tui).

Defaults to the local server and the operator token file in the data directory, so on
one machine it needs no flags. Exit codes: 0 after quitting, 2 when it could not
connect or authorise (the reason is on screen and repeated on stderr), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..client import DEFAULT_URL, AsyncClient, read_token_file
from .common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, add_command, fail


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
    group = dashboard.add_argument_group("connection")
    group.add_argument("--url", help=f"server URL (CALLBOARD_URL, default {DEFAULT_URL})")
    token = group.add_mutually_exclusive_group()
    token.add_argument("--token", help="operator token (CALLBOARD_TOKEN)")
    token.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="read the token from PATH (default: <data dir>/operator.token)",
    )
    group.add_argument(
        "--data-dir",
        help="where to find operator.token (CALLBOARD_DATA_DIR, default ./callboard-data)",
    )
    dashboard.set_defaults(run=run)


def resolve_token(args: argparse.Namespace) -> tuple[str | None, str]:
    """The token, or None with the reason."""
    if args.token:
        return args.token, ""
    if args.token_file is not None:
        token = read_token_file(args.token_file)
        return token, f"no token in {args.token_file} (missing, unreadable or empty)"
    if token := os.environ.get("CALLBOARD_TOKEN"):
        return token, ""
    data_dir = Path(args.data_dir or os.environ.get("CALLBOARD_DATA_DIR") or "callboard-data")
    path = data_dir / "operator.token"
    return read_token_file(path), (
        f"no token: pass --token or --token-file, set CALLBOARD_TOKEN, or run where {path} exists"
    )


def run(args: argparse.Namespace) -> int:
    from ..tui import DashboardApp

    url = args.url or os.environ.get("CALLBOARD_URL") or DEFAULT_URL
    token, why = resolve_token(args)
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
