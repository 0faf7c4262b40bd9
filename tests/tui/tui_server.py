"""A real `callboard serve` subprocess for the Textual tests (which run on asyncio, so
the server cannot share their event loop). It listens on an explicit free port, so a
test can stop it and start it again on the same port and data dir; its output goes to
a file (a pipe nobody reads would fill and stall the server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# A handler beside the built-ins: `flaky` fails its first attempt and returns a
# result on any later one (after an operator's retry).
HANDLERS = """
import callboard

board = callboard.Board()


@board.handler("flaky")
async def flaky(ctx: callboard.JobContext) -> object:
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt always fails")
    return {"attempt": ctx.attempt, "pages": [1, 2]}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, tmp_path: Path, *, workers: int = 4) -> None:
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "callboard-data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def token(self) -> str:
        return (self.data_dir / "operator.token").read_text().strip()

    @property
    def log_path(self) -> Path:
        return self.tmp_path / f"serve-{self.starts}.log"

    def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        (self.tmp_path / "tui_handlers.py").write_text(HANDLERS)
        env = {
            **os.environ,
            "CALLBOARD_DATA_DIR": str(self.data_dir),
            "PYTHONPATH": os.pathsep.join(
                [str(self.tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "callboard",
                    "serve",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(self.workers),
                    "--demo-types",  # the dashboard's tests run demo.sleep jobs
                    "--handlers",
                    "tui_handlers",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.tmp_path,
            )
        deadline = time.monotonic() + timeout
        while "serving the API on" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("serve did not start:\n" + self.log_path.read_text())
            time.sleep(0.05)  # polling a subprocess's log: there is no event to wait on

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
