"""Run `callboard serve` as a user would: a real process on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    log: list[str]

    @property
    def token(self) -> str:
        return (self.data_dir / "operator.token").read_text().strip()

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a `callboard` client command against this server, from its data dir's
        parent, with no URL or token given: the defaults must find both."""
        full_env = {**os.environ, "CALLBOARD_URL": self.url, **(env or {})}
        full_env.pop("CALLBOARD_TOKEN", None)
        return subprocess.run(
            [sys.executable, "-m", "callboard", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.data_dir.parent,
            env=full_env,
        )


@contextmanager
def serve(tmp_path: Path, *args: str, demo_types: bool = True) -> Iterator[ServeProcess]:
    """`demo_types`: the tests use the demo types as ready-made handlers, so they are on
    (CALLBOARD_DEMO_TYPES) unless a test checks a node without them."""
    data_dir = tmp_path / "callboard-data"
    env = {**os.environ, "CALLBOARD_DATA_DIR": str(data_dir)}
    env["CALLBOARD_DEMO_TYPES"] = "true" if demo_types else "false"
    proc = subprocess.Popen(
        [sys.executable, "-m", "callboard", "serve", "--bind", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    log: list[str] = []
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            log.append(line.rstrip("\n"))
            found = re.search(r"serving the API on (http://\S+)", line)
            if found:
                url = found.group(1)
        assert url, "serve did not start:\n" + "\n".join(log)
        # Keep reading what the server logs: a full pipe would block it.
        drain = threading.Thread(target=_drain, args=(proc, log), daemon=True)
        drain.start()
        yield ServeProcess(proc, url, data_dir, log)
    finally:
        stop_process(proc)
        proc.stdout.close()


@contextmanager
def serve_handlers(
    tmp_path: Path, module: str, source: str, *args: str, demo_types: bool = True
) -> Iterator[ServeProcess]:
    """`callboard serve --handlers MODULE`, MODULE's `source` written in the node's
    working directory (which serve imports handler modules from)."""
    (tmp_path / f"{module}.py").write_text(source)
    with serve(tmp_path, "--handlers", module, *args, demo_types=demo_types) as node:
        yield node


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it has not ended within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_process(proc: subprocess.Popen) -> None:
    """SIGKILL if still running: for tests that stop the process themselves."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@contextmanager
def serving_command(
    command: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    stop: Callable[[subprocess.Popen], None] = stop_process,
) -> Iterator[tuple[str, list[str], subprocess.Popen[str]]]:
    """`command` (a `callboard serve` as a user or a unit file runs it) until it says
    where it serves: its URL, its log lines so far (kept up to date) and the process;
    `stop` ends it after the block, if the block has not."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
    )
    log: list[str] = []
    reader = threading.Thread(target=_drain, args=(proc, log), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        found = None
        while found is None and proc.poll() is None and time.monotonic() < deadline:
            found = re.search(r"serving the API on (http://\S+)", "\n".join(log))
            if found is None:
                time.sleep(0.05)
        assert found is not None, "serve did not start:\n" + "\n".join(log)
        yield found.group(1), log, proc
    finally:
        stop(proc)
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def _drain(proc: subprocess.Popen[str], log: list[str]) -> None:
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            log.append(line.rstrip("\n"))
    except ValueError:  # the pipe was closed under us at shutdown
        pass
