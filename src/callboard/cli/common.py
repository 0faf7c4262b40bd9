"""What every client command shares: the parser class, the connection flags
(`--url`, `--token` or `--token-file`, `--data-dir`, `--config`), building a `Client`
from them, and turning errors into exit codes.

Every client command reads `--url` / `--token` (or CALLBOARD_URL / CALLBOARD_TOKEN),
defaulting to the local server and the operator token file in the data directory, so
on one machine nothing needs configuring. The data directory comes from `--data-dir`,
else CALLBOARD_DATA_DIR, else `data_dir` in the configuration file, else
./callboard-data: where `serve` put the token given the same settings.

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
from ..config import SettingError, config_path, read_config_file

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
        missing = message.removeprefix("the following arguments are required: ")
        if missing != message and set(missing.split(", ")) <= {"COMMAND", "ACTION"}:
            # A bare `callboard` (or `callboard companies`) asks what there is: the help,
            # on stderr with the usage exit code, as Click-based tools (Celery, RQ) do.
            self.exit(EXIT_USAGE, self.format_help())
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_command(
    commands: Any, name: str, summary: str, description: str, examples: list[str]
) -> argparse.ArgumentParser:
    """A subcommand whose --help explains it and shows examples."""
    epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
    return commands.add_parser(
        name, help=summary, description=textwrap.fill(description, 80), epilog=epilog
    )


def config_flag(parser: argparse.ArgumentParser | Any) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,  # so `callboard --config F CMD` is not reset here
        help="a TOML file of settings, e.g. `workers = 4` (CALLBOARD_CONFIG); flags and "
        "CALLBOARD_* variables win over it",
    )


def client_flags(parser: argparse.ArgumentParser, *, json: bool = True) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--url", help=f"server URL (CALLBOARD_URL, default {DEFAULT_URL})")
    token = group.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        help="bearer token (CALLBOARD_TOKEN, default: the operator token file in the data dir)",
    )
    token.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="read the bearer token from PATH (default: <data dir>/operator.token)",
    )
    group.add_argument(
        "--data-dir",
        help="where to find operator.token (CALLBOARD_DATA_DIR, else data_dir in the "
        "--config file, else ./callboard-data)",
    )
    config_flag(group)
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def client_data_dir(args: argparse.Namespace) -> Path:
    """The data directory as `serve` finds it: flag, environment, configuration file."""
    if getattr(args, "data_dir", None):
        return Path(args.data_dir)
    if os.environ.get("CALLBOARD_DATA_DIR", "").strip():
        return Path(os.environ["CALLBOARD_DATA_DIR"].strip())
    where = config_path(getattr(args, "config", None), os.environ)
    from_file = read_config_file(where[1], where[0]) if where else {}
    return Path(from_file.get("data_dir", "callboard-data"))


def resolve_token(args: argparse.Namespace) -> tuple[str | None, str]:
    """The token (--token, --token-file, CALLBOARD_TOKEN, then the operator token file
    of the data directory), or None with the reason."""
    if args.token:
        return args.token, ""
    if args.token_file is not None:
        token = read_token_file(args.token_file)
        return token, f"no token in {args.token_file} (missing, unreadable or empty)"
    if token := os.environ.get("CALLBOARD_TOKEN"):
        return token, ""
    path = client_data_dir(args) / "operator.token"
    return read_token_file(path), (
        f"no token: pass --token or --token-file, set CALLBOARD_TOKEN, or run where {path} exists"
    )


def client_from(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("CALLBOARD_URL") or DEFAULT_URL
    token, why = resolve_token(args)
    if token is None:
        raise InvalidRequest(0, "no_token", why)
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
    except (UsageError, SettingError) as exc:
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
