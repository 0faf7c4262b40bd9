"""schedules: list, create, pause, resume and delete a company's schedules.

Conventions (flags, defaults, exit codes) are in `cli.common`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..client import Client
from ..jobs import Schedule
from .common import UsageError, add_command, client_flags


def add_commands(commands: Any) -> None:
    schedules = add_command(
        commands,
        "schedules",
        "list, create, pause, resume and delete schedules",
        "Manage a company's schedules: each makes an ordinary job at every tick of a cron "
        "expression (five fields, read in --timezone, UTC by default) or every N seconds. "
        "A schedule is named by its id or its name.",
        [
            "callboard schedules create nightly --job-type report --cron '30 2 * * *' "
            "--timezone Europe/Paris --company acme",
            "callboard schedules create pulse --job-type noop --every 60 --company acme",
            "callboard schedules list --company acme",
            "callboard schedules pause nightly --company acme",
        ],
    )
    actions = schedules.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        help="a company's schedules and their next run",
        description="List a company's schedules: id, name, timing, next run, state.",
        epilog="example:\n  callboard schedules list --company acme --json",
    )
    _company(listing)
    client_flags(listing)
    listing.set_defaults(handler=_list)

    create = actions.add_parser(
        "create",
        help="create a schedule",
        description="Create a schedule; prints it. Give --cron or --every.",
        epilog="example:\n  callboard schedules create nightly --job-type report "
        "--cron '30 2 * * *' --timezone Europe/Paris --company acme",
    )
    create.add_argument("name")
    create.add_argument("--job-type", required=True, help="the job type of the jobs it makes")
    timing = create.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", help="a cron expression of 5 fields, e.g. '30 2 * * *'")
    timing.add_argument("--every", type=float, metavar="SECONDS", help="an interval (>= 1 s)")
    create.add_argument("--timezone", help="an IANA timezone for --cron (default UTC)")
    create.add_argument("--input", default="{}", help="the jobs' input, a JSON object")
    create.add_argument("--priority", type=int)
    create.add_argument("--max-attempts", type=int)
    create.add_argument("--timeout", type=float, metavar="SECONDS", help="per attempt")
    create.add_argument(
        "--catch-up",
        choices=["skip", "once"],
        help="ticks missed while no node ran: skip them (default) or run once for all",
    )
    create.add_argument("--paused", action="store_true", help="create it paused")
    _company(create)
    client_flags(create)
    create.set_defaults(handler=_create)

    for action, help_, handler in (
        ("pause", "pause a schedule: no job until it is resumed", _pause),
        ("resume", "resume a paused schedule from its next tick", _resume),
        ("delete", "delete a schedule (the jobs it made stay)", _delete),
    ):
        sub = actions.add_parser(
            action,
            help=help_,
            description=help_[0].upper() + help_[1:] + ".",
            epilog=f"example:\n  callboard schedules {action} nightly --company acme",
        )
        sub.add_argument("schedule", metavar="SCHEDULE", help="the schedule's id or name")
        _company(sub)
        client_flags(sub)
        sub.set_defaults(handler=handler)


def _company(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--company", help="company name or id (needed when your token sees several)"
    )


def _line(s: Schedule) -> str:
    timing = f"cron {s.cron!r} {s.timezone}" if s.cron is not None else f"every {s.every:g}s"
    state = "paused" if s.paused else f"next {s.next_run_at.isoformat() if s.next_run_at else '-'}"
    return f"{s.id}  {s.name}  {s.job_type}  {timing}  {state}"


def _show(args: argparse.Namespace, schedule: Schedule) -> None:
    print(json.dumps(schedule.to_dict(), indent=2) if args.json else _line(schedule))


def _list(client: Client, args: argparse.Namespace) -> None:
    found = client.schedules(args.company)
    if args.json:
        print(json.dumps([s.to_dict() for s in found], indent=2))
    elif found:
        print("\n".join(_line(s) for s in found))


def _create(client: Client, args: argparse.Namespace) -> None:
    try:
        input_ = json.loads(args.input)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--input is not valid JSON: {exc}") from None
    made = client.create_schedule(
        args.name,
        args.job_type,
        input_,
        company=args.company,
        cron=args.cron,
        every=args.every,
        timezone=args.timezone,
        priority=args.priority,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
        catch_up=args.catch_up,
        paused=True if args.paused else None,
    )
    _show(args, made)


def _pause(client: Client, args: argparse.Namespace) -> None:
    _show(args, client.pause_schedule(args.schedule, args.company))


def _resume(client: Client, args: argparse.Namespace) -> None:
    _show(args, client.resume_schedule(args.schedule, args.company))


def _delete(client: Client, args: argparse.Namespace) -> None:
    client.delete_schedule(args.schedule, args.company)
    print(json.dumps({"deleted": args.schedule}) if args.json else f"deleted {args.schedule}")
