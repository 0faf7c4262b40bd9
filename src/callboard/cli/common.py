"""What every client command shares: the parser class, the `--url/--token/--data-dir`
flags, building a `Client` from them, and turning errors into exit codes.

Every client command reads `--url` / `--token` (or CALLBOARD_URL / CALLBOARD_TOKEN),
defaulting to the local server and the operator token file in the data directory, so
on one machine nothing needs configuring.

Exit codes (the README's "From the command line"): 0 done; 1 a followed job ended
failed or cancelled, or the server refused (not found, conflict, too large, a download
that does not match its checksum); 2 usage, connection or authorisation errors; 130 on
Ctrl-C. Errors are one line on stderr, `callboard: ...`; `--debug` shows the traceback
instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import httpx

from ..client import (
    DEFAULT_URL,
    Client,
    ClientError,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    Unauthorized,
    read_token_file,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[Client, argparse.Namespace], int | None]


class UsageError(Exception):
    """A command given something it cannot use (bad --input JSON, a missing file): exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and the usual exit code 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_command(
    commands: Any, name: str, summary: str, description: str, examples: list[str]
) -> argparse.ArgumentParser:
    """A subcommand whose --help explains it and shows examples."""
    epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
    return commands.add_parser(
        name, help=summary, description=textwrap.fill(description, 80), epilog=epilog
    )


def client_flags(parser: argparse.ArgumentParser, *, json: bool = True) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--url", help=f"server URL (CALLBOARD_URL, default {DEFAULT_URL})")
    group.add_argument(
        "--token",
        help="bearer token (CALLBOARD_TOKEN, default: the operator token file in the data dir)",
    )
    group.add_argument(
        "--data-dir",
        help="where to find operator.token (CALLBOARD_DATA_DIR, default ./callboard-data)",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,  # so `callboard --debug CMD` is not reset here
        help="show tracebacks",
    )
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def client_from(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("CALLBOARD_URL") or DEFAULT_URL
    token = args.token or os.environ.get("CALLBOARD_TOKEN")
    if not token:
        data_dir = Path(args.data_dir or os.environ.get("CALLBOARD_DATA_DIR") or "callboard-data")
        token = read_token_file(data_dir / "operator.token")
        if token is None:
            raise InvalidRequest(
                0,
                "no_token",
                f"no token: pass --token, set CALLBOARD_TOKEN, or run where "
                f"{data_dir / 'operator.token'} exists",
            )
    return Client(url, token)


def fail(message: str) -> None:
    print(f"callboard: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run a client command (`args.handler`); one clear line on stderr for any error."""
    debug = getattr(args, "debug", False)
    try:
        with client_from(args) as client:
            return args.handler(client, args) or EXIT_OK
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from
        # complaining while it flushes stdout on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (ConnectionFailed, Unauthorized, Forbidden, InvalidRequest) as exc:
        if debug:
            raise
        fail(exc.message)
        return EXIT_USAGE
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        if debug:
            raise
        fail(f"bad --url / CALLBOARD_URL: {exc}")
        return EXIT_USAGE
    except UsageError as exc:
        if debug:
            raise
        fail(str(exc))
        return EXIT_USAGE
    except ClientError as exc:
        if debug:
            raise
        fail(exc.message)
        return EXIT_FAILED
    except OSError as exc:
        if debug:
            raise
        fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return EXIT_FAILED
