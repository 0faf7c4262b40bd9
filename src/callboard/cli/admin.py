"""Client commands that manage the server over its API: companies, tokens, the job
types it runs, gc.

Conventions (flags, defaults, exit codes) are in `cli_client`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..client import Client
from .common import add_command, client_flags


def add_commands(commands: Any) -> None:
    companies = add_command(
        commands,
        "companies",
        "create and list companies, cap their running jobs",
        "Manage companies over the API. Jobs, assets and company tokens belong to a "
        "company; every command that needs one takes --company NAME-or-ID.",
        [
            "callboard companies create acme",
            "callboard companies list --json",
            "callboard companies set-max-running acme 5",
        ],
    )
    company_commands = companies.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = company_commands.add_parser(
        "create",
        help="create a company (operator token)",
        description="Create a company; prints its id and name.",
        epilog="example:\n  callboard companies create acme",
    )
    create.add_argument("name")
    client_flags(create)
    create.set_defaults(handler=_create_company)
    listing = company_commands.add_parser(
        "list",
        help="the companies your token can see",
        description="List the companies your token can see, one `ID  NAME` per line.",
        epilog="example:\n  callboard companies list --json",
    )
    client_flags(listing)
    listing.set_defaults(handler=_list_companies)
    cap = company_commands.add_parser(
        "set-max-running",
        help="cap a company's running jobs on every node (operator token)",
        description="Cap how many of the company's jobs run at once on all nodes together, "
        "or lift the cap with `none`. Jobs already running finish; prints the company.",
        epilog="examples:\n  callboard companies set-max-running acme 5\n"
        "  callboard companies set-max-running acme none",
    )
    cap.add_argument("company", help="company name or id")
    cap.add_argument("max_running", type=_max_running, metavar="N", help="at least 1, or none")
    client_flags(cap)
    cap.set_defaults(handler=_set_max_running)

    tokens = add_command(
        commands,
        "tokens",
        "create, list and revoke company tokens",
        "Manage a company's API tokens (operator token needed). A company token sees "
        "and acts on its company only.",
        [
            "callboard tokens create --company acme --label ci",
            "callboard tokens list --company acme",
            "callboard tokens revoke TOKEN_ID --company acme",
        ],
    )
    token_commands = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = token_commands.add_parser(
        "create",
        help="create a token; it is printed only once",
        description="Create a company token and print it (the server keeps only its hash).",
        epilog="example:\n  callboard tokens create --company acme --label ci",
    )
    create.add_argument("--company", required=True, help="company name or id")
    create.add_argument("--label", default="cli", help="what the token is for")
    client_flags(create)
    create.set_defaults(handler=_create_token)
    listing = token_commands.add_parser(
        "list",
        help="a company's tokens, without secrets",
        description="List a company's tokens (id, label, created, revoked).",
        epilog="example:\n  callboard tokens list --company acme --json",
    )
    listing.add_argument("--company", required=True, help="company name or id")
    client_flags(listing)
    listing.set_defaults(handler=_list_tokens)
    revoke = token_commands.add_parser(
        "revoke",
        help="revoke a token",
        description="Revoke a company token; it stops working at once.",
        epilog="example:\n  callboard tokens revoke TOKEN_ID --company acme",
    )
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    revoke.add_argument("--company", required=True, help="company name or id")
    client_flags(revoke)
    revoke.set_defaults(handler=_revoke_token)

    types = add_command(
        commands,
        "types",
        "the job types the server runs, with their defaults",
        "List every job type the server accepts and runs: its timeout per attempt and "
        "its attempts per job (a submit may override both), how many run at once on one "
        "node, and whether it is built in (noop; demo.sleep, demo.fail and demo.render "
        "only on a server started with --demo-types). Any token may ask.",
        ["callboard types", "callboard types --json"],
    )
    client_flags(types)
    types.set_defaults(handler=_types)

    gc = add_command(
        commands,
        "gc",
        "delete stored files that no asset references (operator)",
        "Ask the server to collect garbage in asset storage: files that no asset row "
        "points at (left by a crash between writing a file and recording it) and that are "
        "older than an hour are deleted. Prints what was done.",
        ["callboard gc", "callboard gc --json"],
    )
    client_flags(gc)
    gc.set_defaults(handler=_gc)


def _show(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, indent=2) if args.json else text)


def _create_company(client: Client, args: argparse.Namespace) -> None:
    company = client.create_company(args.name)
    _show(args, company, f"{company['id']}  {company['name']}")


def _list_companies(client: Client, args: argparse.Namespace) -> None:
    companies = client.companies()
    _show(args, companies, "\n".join(f"{c['id']}  {c['name']}" for c in companies))


def _max_running(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1 or none, got {text!r}")
    return value


def _set_max_running(client: Client, args: argparse.Namespace) -> None:
    company = client.set_max_running(args.company, args.max_running)
    cap = "no cap" if company["maxRunning"] is None else f"at most {company['maxRunning']} running"
    _show(args, company, f"{company['id']}  {company['name']}  {cap}")


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


def _types(client: Client, args: argparse.Namespace) -> None:
    found = client.job_types()
    if args.json:
        print(json.dumps([t.to_dict() for t in found], indent=2))
        return
    rows = [("TYPE", "TIMEOUT", "MAX ATTEMPTS", "CONCURRENCY", "BUILT-IN")]
    rows += [
        (
            t.job_type,
            "none" if t.timeout_seconds is None else f"{t.timeout_seconds:g}s",
            str(t.max_attempts),
            "any" if t.concurrency is None else str(t.concurrency),
            "yes" if t.builtin else "no",
        )
        for t in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _gc(client: Client, args: argparse.Namespace) -> None:
    report = client.gc()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for item in value:
                print(f"  {item if not isinstance(item, dict) else json.dumps(item)}")
        else:
            print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")
    if not report:
        print("nothing to do")
