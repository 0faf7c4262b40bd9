"""Helpers for the client and command-line tests: run the installed `callboard` entry
point against a server, and a tiny fake API server for what a real one never does
(serve tampered bytes, drop a stream at a chosen point)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from serve_process import ServeProcess

# The console script pip installed beside the interpreter: what a user types.
CALLBOARD = str(Path(sys.executable).with_name("callboard"))


def cli_env(server: ServeProcess, env: dict[str, str] | None = None) -> dict[str, str]:
    full = {**os.environ, "CALLBOARD_URL": server.url, **(env or {})}
    full.pop("CALLBOARD_TOKEN", None)
    full.pop("CALLBOARD_DATA_DIR", None)
    return full


def callboard(
    server: ServeProcess, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `callboard ARGS` from the server's data dir's parent with no token given:
    the default (the operator token file) must find it."""
    return subprocess.run(
        [CALLBOARD, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=server.data_dir.parent,
        env=cli_env(server, env),
    )


def callboard_all(
    server: ServeProcess, *commands: list[str], timeout: float = 60
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent `callboard` commands at once (each costs ~0.5 s of start-up)."""
    procs = [(args, start_callboard(server, *args)) for args in commands]
    results = []
    for args, proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append(subprocess.CompletedProcess([CALLBOARD, *args], proc.returncode, out, err))
    return results


def start_callboard(server: ServeProcess, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CALLBOARD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=server.data_dir.parent,
        env=cli_env(server),
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 20, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


# --- a fake API server ---------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


Route = Callable[[Seen], Reply]


class FakeApi:
    """A threaded HTTP/1.0 server answering from `routes` (exact path -> handler); each
    request is recorded in `seen`. Bodies that are iterables are streamed (SSE)."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.seen: list[Seen] = []
        self.stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                seen = Seen(self.command, self.path, dict(self.headers))
                fake.seen.append(seen)
                route = fake.routes.get(self.path.split("?", 1)[0])
                reply = route(seen) if route else Reply(404, body=_error("not_found", "no"))
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if isinstance(reply.body, bytes):
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                try:
                    for chunk in [reply.body] if isinstance(reply.body, bytes) else reply.body:
                        if fake.stopping.is_set():
                            return
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def paths(self) -> list[str]:
        return [seen.path for seen in self.seen]

    def __enter__(self) -> FakeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def json_reply(value: Any, status: int = 200) -> Route:
    body = json.dumps(value).encode()
    return lambda seen: Reply(status, {"Content-Type": "application/json"}, body)


COMPANY = {"id": "0b6f3a47-58a6-4f6b-9d0b-6a4f3b8e2c11", "name": "acme", "createdAt": None}


def fake_job(job_id: str, status: str = "running", percent: float = 0) -> dict[str, Any]:
    now = "2026-01-01T00:00:00.000000Z"
    return {
        "id": job_id,
        "companyId": COMPANY["id"],
        "jobType": "demo.sleep",
        "status": status,
        "priority": 0,
        "input": {},
        "progress": {"percent": percent, "message": None},
        "attempt": 1,
        "maxAttempts": 1,
        "timeoutSeconds": None,
        "runAt": now,
        "resultAssetId": None,
        "errorMessage": None,
        "sourceTaskId": None,
        "idempotencyKey": None,
        "createdAt": now,
        "startedAt": now,
        "finishedAt": now if status in {"done", "failed", "cancelled"} else None,
        "updatedAt": now,
    }


def sse_event(event_id: int, kind: str, job: dict[str, Any]) -> bytes:
    data = {
        "jobId": job["id"],
        "companyId": job["companyId"],
        "status": job["status"],
        "progress": job["progress"],
        "createdAt": job["updatedAt"],
        "job": job,
    }
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def asset_routes(content: bytes, served: bytes, *, etag: str | None = None) -> dict[str, Route]:
    """A company with one asset whose metadata describes `content` while its content
    route serves `served` (tampered, when they differ)."""
    asset_id = "5d1c9b7e-2f4a-4e8b-a1c3-9e7d6b5a4f30"
    sha = hashlib.sha256(content).hexdigest()
    meta = {
        "id": asset_id,
        "companyId": COMPANY["id"],
        "namespace": "uploads",
        "objectKey": f"{COMPANY['id']}/uploads/x",
        "contentType": "text/plain",
        "byteSize": len(content),
        "sha256": sha,
        "originalFilename": "report.txt",
        "sourceTaskId": None,
        "createdByJobId": None,
        "createdAt": "2026-01-01T00:00:00.000000Z",
    }
    base = f"/api/companies/{COMPANY['id']}/assets/{asset_id}"
    headers = {"Content-Type": "text/plain", "ETag": f'"{etag or sha}"'}
    return {
        "/api/companies": json_reply({"items": [COMPANY], "nextCursor": None}),
        base: json_reply(meta),
        f"{base}/content": lambda seen: Reply(200, headers, served),
    }


ASSET_ID = "5d1c9b7e-2f4a-4e8b-a1c3-9e7d6b5a4f30"


@contextmanager
def fake_api(routes: dict[str, Route]) -> Iterator[FakeApi]:
    with FakeApi(routes) as api:
        yield api
