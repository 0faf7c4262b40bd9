"""Filters of the job commands (`--status` repeated or comma-separated, `--type`,
`--company`, `--since`, `--before`), bulk retry and cancel (`callboard retry --status
failed --since 1h`), and `callboard prune`.

A bulk action needs a filter, or `--all` for every job the token sees (as `rq requeue
--all`), so a forgotten JOB_ID never retries or cancels everything. `--dry-run`
prints what would be done.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from ..client import Client
from ..jobs import JobStatus, parse_duration, parse_moment, parse_statuses
from .common import EXIT_OK, UsageError, add_command, client_flags


class _Statuses:
    """`--status` values: one status or several, comma-separated. `choices` is what
    shell completion offers (argparse's own choices would check the raw string)."""

    choices = tuple(str(status) for status in JobStatus)

    def __call__(self, raw: str) -> list[str]:
        try:
            found = parse_statuses([raw]) or frozenset()
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return sorted(str(status) for status in found)


def _moment(raw: str) -> datetime:
    try:
        return parse_moment(raw, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(raw: str) -> float:
    if raw.strip() == "0":
        return 0.0
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_filter_flags(parser: argparse.ArgumentParser) -> None:
    """--status, --type, --company, --since, --before (the same on every job command)."""
    parser.add_argument(
        "--status",
        dest="statuses",
        type=_Statuses(),
        action="extend",
        metavar="STATUS",
        help="queued, running, done, failed or cancelled; repeat it or separate with "
        "commas for any of several (--status queued,running)",
    )
    parser.add_argument("--type", dest="job_type", metavar="JOB_TYPE", help="only this type")
    parser.add_argument("--company", help="company name or id (default: every one you see)")
    parser.add_argument(
        "--since",
        type=_moment,
        metavar="WHEN",
        help="only jobs created since: a duration ago (30s, 15m, 1h, 2d) or an ISO time",
    )
    parser.add_argument(
        "--before",
        type=_moment,
        metavar="WHEN",
        help="only jobs created before (older than): a duration ago (2d) or an ISO time",
    )


def filter_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The client's keyword arguments for the filter flags."""
    if args.since is not None and args.before is not None and args.since >= args.before:
        raise UsageError("--since is not earlier than --before: no job can match")
    return {
        "status": args.statuses,
        "job_type": args.job_type,
        "created_after": args.since,
        "created_before": args.before,
    }


def has_filter(args: argparse.Namespace) -> bool:
    return any(
        value is not None
        for value in (args.statuses, args.job_type, args.company, args.since, args.before)
    )


_VERB = {"retry": ("retried", "would retry"), "cancel": ("cancelled", "would cancel")}


def run_bulk(client: Client, action: str, args: argparse.Namespace) -> int:
    """`callboard retry|cancel` with a filter instead of a JOB_ID."""
    if not args.all and not has_filter(args):
        raise UsageError(
            f"give a JOB_ID, or a filter (--status, --type, --company, --since, --before), "
            f"or --all to {action} every job you see"
        )
    act = client.bulk_retry if action == "retry" else client.bulk_cancel
    report = act(args.company, dry_run=args.dry_run, **filter_kwargs(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    done, would = _VERB[action]
    count = report["eligible"] if report["dryRun"] else report["applied"]
    line = f"{would if report['dryRun'] else done} {count} job{'s' * (count != 1)}"
    details = [f"{report['matched']} matched"]
    if report["stopping"]:
        details.append(f"{report['stopping']} running, asked to stop")
    if report["skipped"]:
        skipped = ", ".join(f"{n} {status}" for status, n in sorted(report["skipped"].items()))
        applies = "failed or cancelled" if action == "retry" else "queued or running"
        details.append(f"skipped (not {applies}): {skipped}")
    if report["changed"]:
        details.append(f"{report['changed']} changed meanwhile, left alone")
    print(f"{line} ({'; '.join(details)})")
    return EXIT_OK


def add_bulk_flags(parser: argparse.ArgumentParser) -> None:
    add_filter_flags(parser)
    parser.add_argument(
        "--all", action="store_true", help="without a filter: every job you see (that applies)"
    )
    parser.add_argument("--dry-run", action="store_true", help="only say how many")


def add_commands(commands: Any) -> None:
    prune = add_command(
        commands,
        "prune",
        "delete finished jobs older than an age",
        "Delete the jobs that finished (done, failed, cancelled) more than --older-than "
        "ago, with their events (operator). The server does this by itself past "
        "CALLBOARD_JOB_RETENTION; this does it now. Their assets stay. --dry-run only "
        "counts.",
        [
            "callboard prune --older-than 30d --dry-run",
            "callboard prune --older-than 12h",
        ],
    )
    prune.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="AGE",
        help="finished longer ago than this: 30s, 15m, 12h, 30d (0: every finished job)",
    )
    prune.add_argument("--dry-run", action="store_true", help="only say how many")
    client_flags(prune)
    prune.set_defaults(handler=_prune)


def _prune(client: Client, args: argparse.Namespace) -> None:
    report = client.prune(args.older_than, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report, indent=2))
    elif report["dryRun"]:
        print(f"would delete {report['matched']} finished jobs (before {report['finishedBefore']})")
    else:
        print(f"deleted {report['deleted']} finished jobs (before {report['finishedBefore']})")
