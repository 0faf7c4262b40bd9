"""Client-side commands that manage the server over its API: companies and tokens.

They read `--url` / `--token` (or CALLBOARD_URL / CALLBOARD_TOKEN), defaulting to the
local server and the operator token file in the data directory, so on one machine
nothing needs configuring. Exit codes: 0 done; 1 the server refused (not found,
conflict, unavailable); 2 usage, connection or authorisation errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .client import DEFAULT_URL as _DEFAULT_URL
from .client import (
    Client,
    ClientError,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    Unauthorized,
    read_token_file,
)

EXIT_REFUSED = 1
EXIT_USAGE = 2


def client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"server URL (CALLBOARD_URL, default {_DEFAULT_URL})")
    parser.add_argument(
        "--token",
        help="bearer token (CALLBOARD_TOKEN, default: the operator token file in the data dir)",
    )
    parser.add_argument(
        "--data-dir",
        help="where to find operator.token (CALLBOARD_DATA_DIR, default ./callboard-data)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_commands(commands: Any) -> None:
    companies = commands.add_parser(
        "companies",
        help="create and list companies",
        description="Manage companies over the API. Example: callboard companies create acme",
    )
    company_commands = companies.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = company_commands.add_parser("create", help="create a company (operator token)")
    create.add_argument("name")
    client_flags(create)
    create.set_defaults(handler=_create_company)
    listing = company_commands.add_parser("list", help="the companies your token can see")
    client_flags(listing)
    listing.set_defaults(handler=_list_companies)

    tokens = commands.add_parser(
        "tokens",
        help="create, list and revoke company tokens",
        description="Manage a company's API tokens (operator token needed). "
        "Example: callboard tokens create --company acme --label ci",
    )
    token_commands = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = token_commands.add_parser("create", help="create a token; it is printed only once")
    create.add_argument("--company", required=True, help="company name or id")
    create.add_argument("--label", default="cli", help="what the token is for")
    client_flags(create)
    create.set_defaults(handler=_create_token)
    listing = token_commands.add_parser("list", help="a company's tokens, without secrets")
    listing.add_argument("--company", required=True, help="company name or id")
    client_flags(listing)
    listing.set_defaults(handler=_list_tokens)
    revoke = token_commands.add_parser("revoke", help="revoke a token")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    revoke.add_argument("--company", required=True, help="company name or id")
    client_flags(revoke)
    revoke.set_defaults(handler=_revoke_token)


def client_from(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("CALLBOARD_URL") or _DEFAULT_URL
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


def run(args: argparse.Namespace) -> int:
    """Run a client command; one clear line on stderr for any error."""
    try:
        with client_from(args) as client:
            args.handler(client, args)
        return 0
    except (ConnectionFailed, Unauthorized, Forbidden, InvalidRequest) as exc:
        print(f"callboard: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as exc:
        print(f"callboard: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED


def _show(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, indent=2) if args.json else text)


def _create_company(client: Client, args: argparse.Namespace) -> None:
    company = client.create_company(args.name)
    _show(args, company, f"{company['id']}  {company['name']}")


def _list_companies(client: Client, args: argparse.Namespace) -> None:
    companies = client.companies()
    _show(args, companies, "\n".join(f"{c['id']}  {c['name']}" for c in companies))


def _create_token(client: Client, args: argparse.Namespace) -> None:
    token = client.create_token(args.company, args.label)
    _show(args, token, token["token"])
    if not args.json:
        print(f"(token {token['id']}, label {token['label']!r}: shown only now)", file=sys.stderr)


def _list_tokens(client: Client, args: argparse.Namespace) -> None:
    tokens = client.tokens(args.company)
    lines = [
        f"{t['id']}  {t['label']}  created {t['createdAt']}"
        + (f"  revoked {t['revokedAt']}" if t["revokedAt"] else "")
        for t in tokens
    ]
    _show(args, tokens, "\n".join(lines))


def _revoke_token(client: Client, args: argparse.Namespace) -> None:
    client.revoke_token(args.company, args.token_id)
    _show(args, {"revoked": args.token_id}, f"revoked {args.token_id}")
