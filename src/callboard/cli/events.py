"""`callboard events`: tail the live event stream (and how events read as text).

Without --company it follows everything the token sees (the operator feed, or a
company token's own company). `--since ID` replays every stored event after ID first,
then follows live; the client reconnects with Last-Event-ID by itself, so the output
has no gaps and no duplicates. `--json` prints one JSON object per line, flushed per
event, for `jq`.

Piped into a reader that stops early (`| head -n 3`), it ends as `cat` or `yes` do
when SIGPIPE ends them (status 141), as soon as the reader has gone: not only at its
next write, which on a quiet feed may never come.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..client import Client, Event, StreamGap, event_to_dict
from ..jobs import JobEvent
from .common import add_command, client_flags


def add_commands(commands: Any) -> None:
    events = add_command(
        commands,
        "events",
        "tail the live event stream",
        "Print job events as they happen, one line each, until Ctrl-C. Without "
        "--company: everything your token can see. --since ID first replays the "
        "stored events after ID (0: everything still held), then follows live; after "
        "a dropped connection it resumes where it was. --json prints one JSON object "
        '({"id", "type", "data"}) per line.',
        [
            "callboard events",
            "callboard events --company acme --since 0 --json | jq .data.status",
            "callboard events --job JOB_ID",
        ],
    )
    events.add_argument("--company", help="only this company's events (name or id)")
    events.add_argument("--job", metavar="JOB_ID", help="only this job's; ends when it does")
    events.add_argument(
        "--since", type=_event_id, metavar="ID", help="replay the stored events after ID first"
    )
    events.add_argument(
        "--count", type=_positive, metavar="N", help="stop after N events (default: follow)"
    )
    events.add_argument(
        "--node-events",
        action="store_true",
        help="also show the operator feed's worker.* and runtime.stats events",
    )
    client_flags(events)
    events.set_defaults(handler=_events)


def _event_id(raw: str) -> int:
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"expected an event id (0 or more), got {raw!r}")
    return int(raw)


def _positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {raw!r}")
    return int(raw)


def describe(event: Event, company_name: str | None = None) -> str:
    """One line of text for an event."""
    if isinstance(event, StreamGap):
        return f"{event.type}: {event.message} (held from #{event.pruned_through + 1})"
    if not isinstance(event, JobEvent):
        return f"{event.type} {json.dumps(dict(event.data), separators=(',', ':'))}"
    job = event.job
    parts = [
        f"#{event.id}",
        str(event.type),
        company_name or job.company_id,
        job.job_type,
        job.id,
        f"attempt {job.attempt}",
    ]
    if job.progress.percent or job.progress.message:
        parts.append(f"{job.progress.percent:g}%")
        if job.progress.message:
            parts.append(job.progress.message)
    if job.error_message and str(event.type) != "content_job.done":
        parts.append(f"error: {job.error_message}")
    return "  ".join(parts)


#: The exit status of a command whose reader went, as a shell shows `cat`'s when
#: SIGPIPE ends it.
READER_GONE = 128 + signal.SIGPIPE


@contextmanager
def _ends_when_its_reader_goes() -> Iterator[None]:
    """While the block runs, end the process with READER_GONE as soon as the reader
    of stdout (a pipe) closes it, even while there is nothing to write.

    A thread waits in poll() for POLLERR on stdout (Linux reports a pipe's gone
    reader so even when asked for no events; macOS does not, and there the next
    write finds out). It ends the process with os._exit, as SIGPIPE would: the only
    output was stdout, and it is gone. Signal dispositions stay as Python has them
    (SIGPIPE ignored), so a socket whose peer went still raises as usual.
    """
    try:
        fd = sys.stdout.fileno()
        piped = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in a test)
        piped = False
    if not (piped and sys.platform.startswith("linux")):
        yield
        return
    stop_read, stop_write = os.pipe()

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # nothing but POLLERR: the read end was closed
        poller.register(stop_read, select.POLLIN)
        ready = dict(poller.poll())
        if stop_read not in ready:
            os._exit(READER_GONE)

    watcher = threading.Thread(target=watch, name="stdout-reader-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        os.write(stop_write, b"x")
        watcher.join()
        os.close(stop_read)
        os.close(stop_write)


def _events(client: Client, args: argparse.Namespace) -> None:
    with _ends_when_its_reader_goes():
        try:
            _print_events(client, args)
        except BrokenPipeError:
            # The reader went while a line was being written: the same end, and
            # the same status, as when the watcher sees it go.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(READER_GONE) from None


def _print_events(client: Client, args: argparse.Namespace) -> None:
    shown = 0
    client.companies()  # names for the text lines
    with client.events(company=args.company, job=args.job, last_event_id=args.since) as events:
        for event in events:
            if not (isinstance(event, JobEvent | StreamGap) or args.node_events):
                continue
            if args.json:
                print(json.dumps(event_to_dict(event), separators=(",", ":")), flush=True)
            else:
                company = (
                    client.company_name(event.company_id) if isinstance(event, JobEvent) else None
                )
                print(describe(event, company), flush=True)
            shown += 1
            if args.count is not None and shown >= args.count:
                return
