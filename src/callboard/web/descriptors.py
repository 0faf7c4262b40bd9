"""File descriptors for a server holding many connections.

Every connection (an SSE stream above all) holds a descriptor, and the usual soft
limit (1,024) stops a node near a thousand streams while the hard limit allows far
more. `raise_open_files_limit()` lifts the soft limit to the hard one at start-up and
says in one line when even that is low.

When descriptors do run out, trio's accept loop retries every 100 ms and logs each
attempt with a traceback: ten tracebacks a second that bury the log while nothing is
broken (the new connections wait in the listen backlog, and are accepted as soon as
others close). `quiet_accept_errors()` turns those into one warning line at most
every `WARN_EVERY` seconds, with the count of refusals since the last one.
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

log = logging.getLogger("callboard.web")

#: Below this many open files a node cannot hold a few thousand streams: say so.
LOW_OPEN_FILES = 4096
#: At most one "out of descriptors" warning this often (seconds).
WARN_EVERY = 10.0
ACCEPT_LOGGER = "trio.serve_listeners"


def _ceiling(hard: int) -> int:
    """The highest soft limit Linux accepts: the hard limit, or fs.nr_open when the
    hard limit is unlimited (RLIM_INFINITY is refused for RLIMIT_NOFILE)."""
    if hard != resource.RLIM_INFINITY:
        return hard
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1 << 20


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _ceiling(hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.debug("open-files limit raised from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("could not raise the open-files limit from %d: %s", soft, exc)
    if soft != resource.RLIM_INFINITY and soft < LOW_OPEN_FILES:
        log.warning(
            "the open-files limit is %d (hard limit %d): this node can hold fewer than "
            "%d connections; raise it (ulimit -n, or LimitNOFILE= under systemd)",
            soft,
            _ceiling(hard),
            soft,
        )
    return soft


class _AcceptErrors(logging.Filter):
    """Drops trio's per-attempt accept-error records, keeping one warning line at
    most every `WARN_EVERY` seconds."""

    def __init__(self) -> None:
        super().__init__()
        self._last = -WARN_EVERY
        self._since = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("accept returned"):
            return True
        self._since += 1
        now = time.monotonic()
        if now - self._last >= WARN_EVERY:
            code = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.warning(
                "cannot accept new connections (%s, open-files limit %d): they wait until "
                "some close (%d attempts refused since the last warning)",
                code,
                soft,
                self._since,
            )
            self._last = now
            self._since = 0
        return False


def quiet_accept_errors() -> None:
    """Install the filter once per process (idempotent: servers restart in-process)."""
    logger = logging.getLogger(ACCEPT_LOGGER)
    if not any(isinstance(f, _AcceptErrors) for f in logger.filters):
        logger.addFilter(_AcceptErrors())
