"""Job commands: submit (and follow), jobs, show, cancel, retry (of one job, or of every
job a filter matches: `cli/bulk.py`).

`submit` prints the new job's id on stdout, so `JOB=$(callboard submit noop)` works.
With `--follow` it then shows the job's progress on stderr (a live bar on a terminal,
one line per event otherwise) and exits 0 when the job is done, 1 when it failed or
was cancelled (with the error), 130 on Ctrl-C, which stops following but leaves the
job running unless `--cancel-on-interrupt`.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..client import Asset, Client, Conflict, NotFound, event_to_dict
from ..jobs import Job, JobEvent, JobStatus, iso
from .bulk import add_bulk_flags, add_filter_flags, filter_kwargs, has_filter, run_bulk
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    add_command,
    client_flags,
    fail,
)

_STATUS_STYLE = {
    JobStatus.QUEUED: "dim",
    JobStatus.RUNNING: "cyan",
    JobStatus.DONE: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "yellow",
}


def add_commands(commands: Any) -> None:
    submit = add_command(
        commands,
        "submit",
        "submit a job (and follow it)",
        "Submit a job of JOB_TYPE and print its id. --follow then shows its progress "
        "until it ends: exit 0 when done, 1 when failed or cancelled, 130 on Ctrl-C "
        "(the job keeps running unless --cancel-on-interrupt). Without --company, the "
        "job goes to the only company your token sees.",
        [
            "callboard submit demo.sleep --input '{\"seconds\": 5}' --follow",
            "callboard submit noop --company acme --source-task task-7 --priority 10",
            "callboard submit diagram --input-file input.json --delay 60",
            "JOB=$(callboard submit noop) && callboard show $JOB",
        ],
    )
    submit.add_argument("job_type", metavar="JOB_TYPE", help="a registered job type")
    given = submit.add_mutually_exclusive_group()
    given.add_argument("--input", metavar="JSON", help="the job's input, a JSON object")
    given.add_argument(
        "--input-file", metavar="PATH", help="read the input JSON from a file ('-': stdin)"
    )
    submit.add_argument("--company", help="company name or id")
    submit.add_argument("--source-task", metavar="ID", help="the conversation task asking")
    submit.add_argument("--priority", type=int, metavar="N", help="higher runs first (default 0)")
    submit.add_argument("--delay", type=_seconds, metavar="S", help="run no sooner than S seconds")
    submit.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="attempts in all (default: the handler's, else 1)",
    )
    submit.add_argument("--idempotency-key", metavar="KEY", help="submit at most once per key")
    submit.add_argument("--follow", action="store_true", help="show progress until the job ends")
    submit.add_argument(
        "--cancel-on-interrupt",
        action="store_true",
        help="with --follow: Ctrl-C also cancels the job",
    )
    client_flags(submit)
    submit.set_defaults(handler=_submit)

    jobs = add_command(
        commands,
        "jobs",
        "list jobs, newest first",
        "List jobs newest first as a table (--json: a JSON array of whole jobs), the "
        "newest 50 unless --limit N or --all; when more match, stderr says so. Without "
        "--company: every company your token sees. Filters combine: --status (repeat it "
        "or separate with commas for any of several), --type, --since and --before "
        "(creation time: a duration ago such as 30s, 15m, 1h, 2d, or an ISO time).",
        [
            "callboard jobs",
            "callboard jobs --status queued --status running",
            "callboard jobs --status failed --type demo.fail --company acme --since 1h",
            "callboard jobs --status done,cancelled --before 2d --all --json | jq length",
            "callboard jobs --json --limit 500 | jq '.[].status'",
        ],
    )
    add_filter_flags(jobs)
    jobs.add_argument("--source-task", metavar="ID", help="only jobs of this task")
    shown = jobs.add_mutually_exclusive_group()
    shown.add_argument("--limit", type=_count, default=50, metavar="N", help="at most N (50)")
    shown.add_argument("--all", action="store_true", help="every matching job, page by page")
    client_flags(jobs)
    jobs.set_defaults(handler=_jobs)

    show = add_command(
        commands,
        "show",
        "every field of a job, its assets and its events",
        "Show a job found by its id alone: every field, the assets it produced, and its "
        "stored event history. A failed job shows what raised (errorType) and its "
        "traceback; each failed attempt's event in the history names its error type.",
        ["callboard show JOB_ID", "callboard show JOB_ID --json"],
    )
    show.add_argument("job_id", metavar="JOB_ID")
    client_flags(show)
    show.set_defaults(handler=_show)

    for name, summary, description, handler, examples in (
        (
            "cancel",
            "cancel a job, or every job a filter matches",
            "Cancel a job: a queued one ends at once, a running one has its handler "
            "cancelled. Exits 1 if the job has already ended. With a filter instead of "
            "JOB_ID (or --all): every queued or running job it matches, and a count of "
            "what was cancelled and skipped; --dry-run only counts.",
            _cancel,
            [
                "callboard cancel JOB_ID",
                "callboard cancel --status queued --type demo.sleep --dry-run",
                "callboard cancel --company acme --since 10m",
            ],
        ),
        (
            "retry",
            "run a failed or cancelled job again, or every one a filter matches",
            "Queue a failed or cancelled job for one more attempt. Exits 1 otherwise. "
            "With a filter instead of JOB_ID (or --all): every failed or cancelled job it "
            "matches (as `rq requeue --all`), and a count of what was retried and "
            "skipped; --dry-run only counts.",
            _retry,
            [
                "callboard retry JOB_ID",
                "callboard retry --status failed --since 1h --dry-run",
                "callboard retry --status failed --type demo.fail --company acme",
            ],
        ),
    ):
        command = add_command(commands, name, summary, description, examples)
        command.add_argument("job_id", metavar="JOB_ID", nargs="?", help="one job")
        add_bulk_flags(command)
        client_flags(command)
        command.set_defaults(handler=handler)


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {raw!r}")
    return value


def _count(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {raw!r}")
    return int(raw)


def _input_from(args: argparse.Namespace) -> dict[str, Any]:
    if args.input is not None:
        text, where = args.input, "--input"
    elif args.input_file is not None:
        where = f"--input-file {args.input_file}"
        try:
            text = sys.stdin.read() if args.input_file == "-" else Path(args.input_file).read_text()
        except OSError as exc:
            raise UsageError(f"{where}: {exc.strerror}") from None
    else:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{where}: the input must be a JSON object, got {type(value).__name__}")
    return value


# --- submit and follow ---------------------------------------------------------------------


def _submit(client: Client, args: argparse.Namespace) -> int:
    submitted = client.submit(
        args.company,
        args.job_type,
        _input_from(args),
        source_task_id=args.source_task,
        priority=args.priority,
        delay=args.delay,
        max_attempts=args.max_attempts,
        idempotency_key=args.idempotency_key,
    )
    print(json.dumps(submitted.to_dict()) if args.json else submitted.job_id, flush=True)
    if not args.follow:
        return EXIT_OK
    return follow(client, submitted.job_id, cancel_on_interrupt=args.cancel_on_interrupt)


def follow(client: Client, job_id: str, *, cancel_on_interrupt: bool = False) -> int:
    """Show a job's progress until it ends; the exit code says how it ended."""
    console = Console(stderr=True, highlight=False)
    display = _Bar(console) if console.is_terminal else _Lines()
    job: Job | None = None
    try:
        with display, client.events(job=job_id) as events:
            for event in events:
                if isinstance(event, JobEvent):
                    job = event.job
                    display.update(event)
        if job is None or not job.terminal:
            job = client.get(job_id)  # the stream answered 204: it had ended already
    except KeyboardInterrupt:
        if not cancel_on_interrupt:
            fail(f"interrupted; job {job_id} keeps running (callboard cancel {job_id} stops it)")
            return EXIT_INTERRUPTED
        try:
            stopped = client.cancel(job_id)
        except Conflict:
            fail(f"interrupted; job {job_id} had already ended")
        else:
            done = stopped.status is JobStatus.CANCELLED
            fail(f"interrupted; {'cancelled' if done else 'asked to cancel'} job {job_id}")
        return EXIT_INTERRUPTED
    return _outcome(job)


def _outcome(job: Job) -> int:
    if job.status is JobStatus.DONE:
        took = ""
        if job.started_at and job.finished_at:
            took = f" in {(job.finished_at - job.started_at).total_seconds():.1f}s"
        result = f"; result asset {job.result_asset_id}" if job.result_asset_id else ""
        print(f"job {job.id} done{took}{result}", file=sys.stderr)
        return EXIT_OK
    if job.status is JobStatus.FAILED:
        fail(f"job {job.id} failed after {job.attempt} attempt(s): {job.error_message}")
    else:
        reason = f": {job.error_message}" if job.error_message else ""
        fail(f"job {job.id} was {job.status}{reason}")
    return EXIT_FAILED


class _Bar:
    """A live progress bar (rich) on a terminal."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[status]:<9}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[message]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task("job", total=100, status="queued", message="")

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, event: JobEvent) -> None:
        job = event.job
        message = job.progress.message or ""
        if event.type == "content_job.retrying":
            message = f"retrying: {job.error_message}"
        self._progress.update(
            self._task, completed=job.progress.percent, status=str(job.status), message=message
        )


class _Lines:
    """One line per event when stderr is not a terminal (logs, CI, tests)."""

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, event: JobEvent) -> None:
        job = event.job
        text = f"{job.status} {job.progress.percent:g}%"
        if job.progress.message:
            text += f" {job.progress.message}"
        if event.type == "content_job.retrying":
            text += f" (retrying: {job.error_message})"
        print(text, file=sys.stderr, flush=True)


# --- jobs, show, cancel, retry -------------------------------------------------------------


def _age(when: datetime | None) -> str:
    if when is None:
        return ""
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _stdout() -> Console:
    # Piped output keeps whole lines: no wrapping to an assumed 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 1000)


def _print_table(table: Table) -> None:
    if sys.stdout.isatty():
        Console(highlight=False).print(table)
        return
    # Piped: plain text, whole lines, no padding at their ends.
    plain = Console(file=io.StringIO(), width=1000, color_system=None, highlight=False)
    plain.print(table)
    for line in plain.file.getvalue().splitlines():  # type: ignore[attr-defined]
        print(line.rstrip())


def _jobs(client: Client, args: argparse.Namespace) -> None:
    found = client.list(
        args.company,
        source_task_id=args.source_task,
        page_size=500 if args.all else min(args.limit + 1, 500),
        **filter_kwargs(args),
    )
    if args.all:
        jobs = list(found)
    else:
        # One more than shown tells whether there are more.
        jobs = list(islice(found, args.limit + 1))
        if len(jobs) > args.limit:
            jobs = jobs[: args.limit]
            print(
                f"showing the newest {args.limit} jobs; more match "
                f"(--limit N shows more, --all every one)",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps([job.to_dict() for job in jobs], indent=2))
        return
    if not jobs:
        print("no jobs")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("JOB ID", "COMPANY", "TYPE", "STATUS", "PROGRESS", "ATTEMPT", "AGE", "DETAIL"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for job in jobs:
        detail = job.error_message if job.error_message else (job.progress.message or "")
        table.add_row(
            job.id,
            client.company_name(job.company_id) or job.company_id,
            job.job_type,
            f"[{_STATUS_STYLE[job.status]}]{job.status}[/]",
            f"{job.progress.percent:g}%",
            f"{job.attempt}/{job.max_attempts}",
            _age(job.created_at),
            detail,
        )
    _print_table(table)


def _job_assets(client: Client, job: Job) -> list[Asset]:
    """Every asset the job saved (the server lists them by the job that made them)."""
    try:
        return list(client.assets(job.company_id, job_id=job.id))
    except NotFound:
        return []  # a server without asset routes


#: A result longer than this (as compact JSON) is shown in its own section.
_RESULT_INLINE = 100


def _show(client: Client, args: argparse.Namespace) -> None:
    job = client.get(args.job_id)
    assets = _job_assets(client, job)
    history = client.history(job.id)
    if args.json:
        print(
            json.dumps(
                {
                    "job": job.to_dict(),
                    "assets": [asset.to_dict() for asset in assets],
                    "events": [event_to_dict(event) for event in history],
                },
                indent=2,
            )
        )
        return
    name = client.company_name(job.company_id)
    out = _stdout()
    result_below = False
    for key, value in job.to_dict().items():
        if key == "companyId" and name:
            value = f"{value} ({name})"
        elif key == "result" and value is not None:
            # Always as JSON (a string result is quoted, a list is not Python's repr);
            # one that does not fit a line gets a section of its own.
            value = json.dumps(value, ensure_ascii=False)
            if len(value) > _RESULT_INLINE:
                result_below, value = True, "(below)"
        elif key == "errorTraceback" and value is not None:
            value = "(below)"  # many lines: a section of its own
        elif isinstance(value, dict):
            value = json.dumps(value)
        out.print(f"{key:<16}{'' if value is None else value}", markup=False)
    if result_below:
        out.print("\nresult", style="bold")
        # soft_wrap: a long string in it stays one line, as JSON tools expect.
        out.print(
            json.dumps(job.result, ensure_ascii=False, indent=2), markup=False, soft_wrap=True
        )
    if job.error_traceback is not None:
        out.print("\ntraceback", style="bold")
        out.print(job.error_traceback.rstrip("\n"), markup=False, soft_wrap=True)
    out.print(f"\nassets ({len(assets)})", style="bold")
    for asset in assets:
        result = "  (result)" if asset.id == job.result_asset_id else ""
        out.print(
            f"  {asset.id}  {asset.original_filename}  {asset.content_type}  "
            f"{asset.byte_size} bytes  sha256 {asset.sha256}{result}",
            markup=False,
        )
    out.print(f"\nevents ({len(history)})", style="bold")
    for event in history:
        out.print(f"  {_history_line(event)}", markup=False)


def _history_line(event: JobEvent) -> str:
    job = event.job
    parts = [f"#{event.id}", iso(event.created_at) or "", str(event.type), f"attempt {job.attempt}"]
    if event.type == "content_job.progress" or job.progress.percent:
        parts.append(f"{job.progress.percent:g}% {job.progress.message or ''}".rstrip())
    if job.error_message and event.type != "content_job.done":
        kind = f" ({job.error_type})" if job.error_type else ""
        parts.append(f"error: {job.error_message}{kind}")
    return "  ".join(parts)


def _single(args: argparse.Namespace) -> bool:
    """A JOB_ID alone: the single-job action. With filters too, refuse."""
    if args.job_id is None:
        return False
    if has_filter(args) or args.all or args.dry_run:
        raise UsageError("give a JOB_ID or a filter (or --all), not both")
    return True


def _cancel(client: Client, args: argparse.Namespace) -> int | None:
    if not _single(args):
        return run_bulk(client, "cancel", args)
    job = client.cancel(args.job_id)
    if args.json:
        print(json.dumps(job.to_dict(), indent=2))
    elif job.status is JobStatus.CANCELLED:
        print(f"cancelled job {job.id}")
    else:
        print(f"asked job {job.id} to stop (it is {job.status})")


def _retry(client: Client, args: argparse.Namespace) -> int | None:
    if not _single(args):
        return run_bulk(client, "retry", args)
    job = client.retry(args.job_id)
    if args.json:
        print(json.dumps(job.to_dict(), indent=2))
    else:
        print(f"queued job {job.id} again")
