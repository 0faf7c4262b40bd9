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
        env = {**os.environ, "CALLBOARD_DATA_DIR": str(self.data_dir)}
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
