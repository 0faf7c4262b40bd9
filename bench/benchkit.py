"""What the bench scripts share: a `callboard serve` child process, a fresh PostgreSQL
database, wrk runs and their figures, CPU and RSS of a process from /proc, percentiles
and the open-files limit.

Scripts under bench/ import it as `benchkit` (a script's own folder is first on
sys.path when it runs as `python bench/<script>.py`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

MIB = 1 << 20

#: The maintenance database the scripts make their fresh databases next to.
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SERVING = re.compile(r"serving the API on (http://\S+)")
ERRORS = re.compile(r" ERROR |Traceback")


class Failed(Exception):
    """A measurement went wrong (a script may leave that round's figure out)."""


# --- processes ---------------------------------------------------------------------


def stop(proc: subprocess.Popen, timeout: float = 30, group: bool = False) -> int:
    """SIGTERM, then SIGKILL (to its whole process group with `group`) after `timeout`
    seconds; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
    return proc.returncode


class Serve:
    """`python -m callboard serve --bind 127.0.0.1:0 [extra]` with its data dir in
    `data_dir`. Its output is drained by a thread (an undrained pipe would block the
    server once access logs fill it): the last lines are kept, the URL it serves is
    taken from the line matching `ready`, and lines matching `errors` are counted."""

    def __init__(
        self,
        data_dir: Path,
        extra: Sequence[str] = (),
        *,
        ready: re.Pattern[str] = SERVING,
        errors: re.Pattern[str] = ERRORS,
        tail: int = 100,
        group: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.url: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=tail)
        self.errors: list[str] = []  # the first few error lines
        self.error_count = 0
        self.group = group
        self._ready = ready
        self._error_pattern = errors
        self._found = threading.Event()
        env = {**os.environ, "CALLBOARD_DATA_DIR": str(data_dir)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callboard", "serve", "--bind", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=data_dir.parent,
            process_group=0 if group else None,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            if self.url is None and (found := self._ready.search(line)):
                self.url = found.group(1)
                self._found.set()
            if self._error_pattern.search(line):
                self.error_count += 1
                if len(self.errors) < 10:
                    self.errors.append(line)
        self._found.set()  # EOF: the process ended

    def wait_started(self, timeout: float = 30.0, fail: type[BaseException] = SystemExit) -> str:
        """The URL it serves; `fail` is raised (with its last lines) if it does not."""
        self._found.wait(timeout)
        if self.url is None:
            self.stop()
            raise fail("serve did not start:\n" + "\n".join(self.tail))
        return self.url

    @property
    def token(self) -> str:
        return (self.data_dir / "operator.token").read_text().strip()

    def stop(self, timeout: float = 30) -> int:
        code = stop(self.proc, timeout, self.group)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (Linux /proc); OSError once it is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` in KiB (VmRSS), 0 if /proc does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (child processes inherit it): a
    thousand subscribers need a thousand sockets on each side. (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --- PostgreSQL --------------------------------------------------------------------


async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new database `<prefix>_<random>` on the server of `admin_url` (its URL), dropped
    (connections and all) when the block ends."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    finally:
        asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- wrk -----------------------------------------------------------------------------

WRK_POST = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class Wrk:
    """What one wrk run printed: requests/s, p50 and p99 in ms (NaN if absent), the
    answers other than 2xx/3xx, and its `Socket errors:` line if it printed one."""

    rps: float
    p50: float
    p99: float
    non2xx: float
    socket_errors: str | None


def post_script(path: Path, body: str, token: str) -> Path:
    """A wrk Lua script POSTing `body` (JSON, no single quotes) with the bearer token."""
    path.write_text(WRK_POST.format(body=body, token=token))
    return path


def wrk(
    url: str,
    seconds: float,
    script: Path | None = None,
    connections: int = 50,
    timeout: float | None = None,
) -> Wrk:
    """`wrk -t1 -c<connections> -d<seconds>s --latency [-s script] url`."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    if script is not None:
        command[-1:-1] = ["-s", str(script)]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=True
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rate:
        raise Failed(f"wrk printed no rate:\n{out}")
    latency = {}
    for q in ("50", "99"):
        line = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
        latency[q] = float(line.group(1)) * _UNITS[line.group(2)] if line else float("nan")
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(r"Socket errors:.*", out)
    return Wrk(
        rps=float(rate.group(1)),
        p50=latency["50"],
        p99=latency["99"],
        non2xx=float(non.group(1)) if non else 0.0,
        socket_errors=sockets.group(0) if sockets else None,
    )


# --- figures -----------------------------------------------------------------------


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100): the value at rank round(q% of n - 1), NaN if none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q / 100))]


def floor_rank(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values: the value at rank floor(q% of n)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * (q / 100)))]


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto's standalone S3 server (the `bench` extra) on a free loopback port, in its
    own process so its CPU is not the measured process's; (process, endpoint URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto's server did not start")
