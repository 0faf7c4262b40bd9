"""The `callboard` command line: the parser of every command, and the dispatch to them.

`serve`, `migrate` and `storage copy` run in `cli.serve` (the only module here that
loads the runtime); the client commands (submit, jobs, show, cancel, retry, events, assets,
companies, tokens, types, gc, dashboard) are in `cli.jobs`, `cli.events`, `cli.assets`,
`cli.admin` and `cli.dashboard`, over `callboard.client`; `completion` prints shell
scripts made from this parser (`cli.completion`).

The same option means the same thing everywhere: `--debug` and `--config` go before or
after the command; every client command takes `--url`, `--token` or `--token-file`,
`--data-dir` and `--config`. A bare `callboard` (or command group) prints its help on
stderr with exit code 2, as Click-based tools do.

Exit codes (the README's "From the command line"): 0 success, 1 a followed job failed
or was cancelled (or the server refused), 2 usage, configuration, connection or authorisation errors
(one line on stderr, no traceback unless --debug), 130 on Ctrl-C for client commands.
`serve` stops gracefully on Ctrl-C or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from importlib import metadata

from . import admin, assets, bulk, common, completion, dashboard, events, jobs, schedules


def _store_flags(parser: argparse.ArgumentParser) -> None:
    """Where a node keeps its store, and the file its settings may come from."""
    parser.add_argument(
        "--data-dir",
        help="holds the SQLite database, assets and operator.token "
        "(CALLBOARD_DATA_DIR, default ./callboard-data)",
    )
    parser.add_argument(
        "--database",
        dest="database_url",
        help="sqlite:///path.db or postgresql://user@host:port/db (CALLBOARD_DATABASE_URL)",
    )
    common.config_flag(parser)


def _location_flags(parser: argparse.ArgumentParser) -> None:
    """Where a node keeps its store and its assets."""
    _store_flags(parser)
    parser.add_argument(
        "--storage-dir",
        help="where assets are stored (CALLBOARD_STORAGE_DIR, default <data dir>/assets)",
    )
    parser.add_argument(
        "--storage-url",
        help="file:///path or s3://bucket/prefix: where assets are stored; nodes sharing a "
        "PostgreSQL queue need one they all reach (CALLBOARD_STORAGE_URL, default the "
        "--storage-dir)",
    )


def _server_flags(parser: argparse.ArgumentParser) -> None:
    _location_flags(parser)
    parser.add_argument(
        "--database-pool-size",
        type=str,
        help="PostgreSQL connections of this node (CALLBOARD_DATABASE_POOL_SIZE, default 10)",
    )
    parser.add_argument(
        "--workers",
        type=str,
        help="worker actors on this node, 0 for none (CALLBOARD_WORKERS, default 8)",
    )
    parser.add_argument(
        "--lease-seconds", type=str, help="job lease length (CALLBOARD_LEASE_SECONDS, default 30)"
    )
    parser.add_argument(
        "--handlers",
        action="append",
        help="a module registering handlers; repeatable (CALLBOARD_HANDLERS, comma-separated)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = common.Parser(
        prog="callboard",
        description="A job runtime for trio: durable jobs, supervised workers, live event streams.",
        epilog="first steps (with `callboard serve` running in another terminal):\n"
        "  callboard companies create acme\n"
        "  callboard submit demo.sleep --input '{\"seconds\": 5}' --follow\n"
        "  callboard jobs\n"
        "  callboard events --since 0\n"
        "elsewhere:\n"
        "  callboard jobs --url http://10.0.0.5:8000 --token-file ~/.callboard-token\n"
        "  callboard --config /etc/callboard/callboard.toml migrate\n"
        "`callboard COMMAND --help` explains each command, with examples; "
        "`callboard completion bash|zsh` prints a completion script.",
    )
    parser.add_argument(
        "--version", action="version", version=f"callboard {version()}", help="print the version"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks and debug logs (also accepted after the command)",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="a TOML file of settings (CALLBOARD_CONFIG); see `callboard serve --help`",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = common.add_command(
        commands,
        "serve",
        "run a node: store, dispatcher, workers, reaper",
        "Run a callboard node on the embedded SQLite store (default) or PostgreSQL. "
        "Settings come from flags, then CALLBOARD_* variables, then a TOML file named by "
        "--config or CALLBOARD_CONFIG whose keys are the settings' names (workers = 4, "
        'database_url = "postgresql://..."), then defaults. --handlers imports modules '
        "from the working directory too, as `python -m` would. Ctrl-C or SIGTERM stops "
        "it gracefully (exit 0); a port already in use, or a bad setting, is one line "
        "and exit 2.",
        [
            "callboard serve --workers 4 --demo 20    # tries it out with demo jobs",
            "callboard serve --demo-types              # the demo.* job types, no jobs",
            "callboard serve --handlers myjobs --bind 0.0.0.0:8000",
            "callboard serve --config /etc/callboard/callboard.toml",
            "CALLBOARD_WORKERS=16 callboard serve --config callboard.toml",
        ],
    )
    _server_flags(serve)
    serve.add_argument(
        "--bind", help="HOST:PORT for the HTTP API (CALLBOARD_BIND, default 127.0.0.1:8000)"
    )
    serve.add_argument(
        "--processes",
        type=str,
        metavar="N",
        help="run N nodes on this machine behind the one --bind port, stopped together by "
        "one Ctrl-C or SIGTERM; PostgreSQL only (CALLBOARD_PROCESSES, default 1)",
    )
    serve.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_const",
        const="false",
        help="refuse to start on an outdated schema instead of migrating it "
        "(CALLBOARD_MIGRATE=false); run `callboard migrate` first",
    )
    serve.add_argument(
        "--log-events",
        action="store_true",
        help="log every job event (handy in development; noisy under load)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per HTTP request (off by default: a line per request costs "
        "about a tenth of the node's request rate; your proxy may log them already)",
    )
    serve.add_argument(
        "--demo",
        type=int,
        default=0,
        metavar="N",
        help="submit N demo jobs (noop, demo.sleep, demo.fail) to the company 'demo' at "
        "start; turns on --demo-types",
    )
    serve.add_argument(
        "--demo-types",
        dest="demo_types",
        action="store_const",
        const="true",
        help="run the built-in demo.sleep, demo.fail and demo.render job types "
        "(CALLBOARD_DEMO_TYPES, default off: one demo.render job may write 500 MiB)",
    )

    migrate = common.add_command(
        commands,
        "migrate",
        "apply pending schema migrations and exit",
        "Apply the store's pending migrations and exit; `serve` does it at start unless "
        "--no-migrate. With several nodes on PostgreSQL, run it once before starting "
        "them (with `serve --no-migrate`).",
        [
            "callboard migrate --data-dir ./callboard-data",
            "callboard migrate --database postgresql://callboard@db.internal:5432/callboard",
            "callboard migrate --config /etc/callboard/callboard.toml",
        ],
    )
    _store_flags(migrate)

    storage = common.add_command(
        commands,
        "storage",
        "move asset storage: copy every asset to another backend",
        "Work on the node's asset storage directly (not over the API), with the settings "
        "`serve` reads: --data-dir, --database, --storage-dir, --storage-url.",
        [
            "callboard storage copy --to s3://my-bucket/callboard --dry-run",
            "callboard storage copy --to s3://my-bucket/callboard",
        ],
    )
    storage_actions = storage.add_subparsers(dest="action", metavar="ACTION", required=True)
    copy = common.add_command(
        storage_actions,
        "copy",
        "copy every asset to another storage URL, verified by sha256",
        "Copy every asset (of every company) from the node's storage to --to, under the "
        "same keys. Each copy is hashed as it streams and kept only if its size and "
        "sha256 match the asset's row; an object already in the target is read back and "
        "kept if it matches, written again if not, so running the command again resumes "
        "an interrupted copy. Prints each asset it copies or cannot, then a report. Exit 0 "
        "when every asset is in the target and verified, 1 otherwise, 2 for bad input or "
        "storage that cannot be reached. The embedded SQLite store is locked by a running "
        "node: stop it first. On PostgreSQL it may run beside the nodes. Credentials, "
        "region and endpoint of s3:// come from the standard AWS_* settings.",
        [
            "callboard storage copy --to s3://my-bucket/callboard --dry-run",
            "callboard storage copy --to s3://my-bucket/callboard",
            "callboard storage copy --data-dir /srv/callboard --to file:///mnt/shared/assets",
            "callboard storage copy --storage-url s3://my-bucket/callboard "
            "--to file:///srv/callboard/assets",
        ],
    )
    _location_flags(copy)
    copy.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="where to copy: file:///absolute/path or s3://bucket/prefix",
    )
    copy.add_argument(
        "--dry-run",
        action="store_true",
        help="only count what would be copied (looks at each object, reads none)",
    )
    copy.add_argument(
        "--parallel",
        type=int,
        default=4,
        metavar="N",
        help="assets copied at once (default 4; each holds up to about 10 MiB)",
    )
    jobs.add_commands(commands)
    bulk.add_commands(commands)
    events.add_commands(commands)
    assets.add_commands(commands)
    admin.add_commands(commands)
    schedules.add_commands(commands)
    dashboard.add_commands(commands)
    completion.add_commands(commands, parser)
    for command in _all_parsers(parser):
        if command is not parser and "--debug" not in command._option_string_actions:
            # `callboard CMD --debug` as well as `callboard --debug CMD`, for every command.
            command.add_argument(
                "--debug",
                action="store_true",
                default=argparse.SUPPRESS,  # so `callboard --debug CMD` is not reset here
                help="show tracebacks and debug logs",
            )
    return parser


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every (sub)command's parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _all_parsers(sub)


def version() -> str:
    try:
        return metadata.version("callboard")
    except metadata.PackageNotFoundError:  # run from a source tree never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is not None:  # `dashboard`: runs its own event loop
        return args.run(args)
    if getattr(args, "handler", None) is not None:
        return common.run(args)
    # Only `serve`, `migrate` and `storage` load the runtime, and only once asked for.
    from .serve import run_server

    return run_server(args)
