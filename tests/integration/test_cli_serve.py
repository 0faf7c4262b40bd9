"""`callboard serve` as a user runs it: a real process, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serve_process import serve

pytestmark = pytest.mark.slow


def run_serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CALLBOARD_DATA_DIR": str(tmp_path / "data")}
    return subprocess.Popen(
        [sys.executable, "-m", "callboard", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def read_until(proc: subprocess.Popen[str], predicate, timeout: float = 30) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if predicate(lines):
            return lines
    raise AssertionError("serve did not log what was expected:\n" + "\n".join(lines))


def test_serve_runs_demo_jobs_and_stops_gracefully_on_sigterm(tmp_path):
    proc = run_serve(
        tmp_path, "--workers", "3", "--demo", "3", "--log-events", "--bind", "127.0.0.1:0"
    )
    try:
        lines = read_until(
            proc,
            lambda ls: (
                sum("content_job.done" in x for x in ls) >= 2
                and sum("content_job.failed" in x for x in ls) >= 1
            ),
        )
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, rest
    log = "\n".join(lines) + rest
    assert "submitted 3 demo jobs" in log
    assert "type=demo.sleep" in log and "progress=" in log
    assert "content_job.retrying" in log and "error='a demo failure'" in log
    assert "received SIGTERM; draining" in log and "stopped" in log
    assert (tmp_path / "data" / "callboard.db").exists()


def test_serve_refuses_a_bad_setting_with_one_line(tmp_path):
    env = {**os.environ, "CALLBOARD_WORKERS": "lots", "CALLBOARD_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "callboard", "serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "callboard: CALLBOARD_WORKERS: expected a whole number, got 'lots'"
    )
    assert "Traceback" not in result.stderr


def test_sigterm_ends_open_event_streams_and_exits_promptly(tmp_path):
    with serve(tmp_path) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(
            base_url=server.url, headers=headers, timeout=httpx.Timeout(10, read=20)
        ) as c:
            company = c.post("/api/companies", json={"name": "acme"}).json()
            with c.stream("GET", f"/api/companies/{company['id']}/events") as stream:
                assert stream.status_code == 200
                lines = stream.iter_lines()
                assert next(lines).startswith("retry: ")
                assert next(lines).startswith("id: ")  # the head the feed starts at
                server.proc.send_signal(signal.SIGTERM)
                # The stream ends cleanly (a complete chunked body), not cut off.
                rest = list(lines)
            assert stream.headers["connection"] == "close"
        assert server.proc.wait(timeout=30) == 0
    assert all(not line or line.startswith(":") for line in rest)


HANDLERS = """
import callboard

board = callboard.Board()


@board.handler("greet", max_attempts=1)
async def greet(ctx: callboard.JobContext) -> None:
    await ctx.progress(50, f"hello {ctx.input['name']}")
"""


def test_serve_loads_handler_modules(tmp_path, monkeypatch):
    (tmp_path / "myhandlers.py").write_text(HANDLERS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with serve(tmp_path, "--handlers", "myhandlers") as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers) as c:
            company = c.post("/api/companies", json={"name": "acme"}).json()
            jobs = f"/api/companies/{company['id']}/content-jobs"
            job = c.post(jobs, json={"jobType": "greet", "input": {"name": "ada"}}).json()
            deadline = time.monotonic() + 30
            while (got := c.get(f"{jobs}/{job['jobId']}").json())["status"] != "done":
                assert time.monotonic() < deadline, got
                time.sleep(0.05)
    assert got["progress"] == {"percent": 100, "message": "hello ada"}


def test_serve_refuses_a_handler_module_it_cannot_import(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "callboard", "serve", "--handlers", "no_such_module_here"],
        capture_output=True,
        text=True,
        env={**os.environ, "CALLBOARD_DATA_DIR": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        "callboard: --handlers: cannot import 'no_such_module_here'"
    )
    assert "Traceback" not in result.stderr
