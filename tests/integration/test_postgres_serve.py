"""`callboard serve` on PostgreSQL, as an operator runs it: real processes on a real
database. Two nodes share one queue and one event history; `callboard migrate` and
`--no-migrate`; a database outage, cut and restored through a TCP proxy."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from serve_process import ServeProcess, serve

import s3kit
from callboard.client import Client
from callboard.client.errors import Unavailable
from callboard.jobs import JobEvent
from netkit import CuttableProxy
from store import pgkit

pytestmark = pytest.mark.slow

JOBS_PER_NODE = 1_000
BATCH = 100
WAIT = 120.0  # generous: the suite may run on a loaded machine


# --- helpers -------------------------------------------------------------------------


def callboard(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLBOARD_DATA_DIR": str(tmp_path / "callboard-data")}
    env.pop("CALLBOARD_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "callboard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=env,
    )


def tail(node: ServeProcess, n: int = 40) -> str:
    return "\n".join(node.log[-n:])


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


class FeedReader(threading.Thread):
    """A raw SSE subscriber (httpx, no callboard client in between, so duplicates or
    out-of-order ids would show): records every job event as (id, type, job id) and the
    job ids of `worker.busy` events, and resumes with Last-Event-ID whenever the server
    ends the stream (it does when the subscriber falls behind)."""

    def __init__(self, url: str, token: str, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.url = url
        self.token = token
        self.events: list[tuple[int, str, str]] = []
        self.done: set[str] = set()
        self.busy: list[str] = []
        self.gaps: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.connects = 0
        self.drops: list[str] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self._last_id: int | None = None

    def run(self) -> None:
        try:
            with httpx.Client(
                base_url=self.url,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=httpx.Timeout(10, read=30),
            ) as http:
                while not self.stop.is_set():
                    try:
                        self._read(http)
                    except httpx.TransportError as exc:  # resume with Last-Event-ID
                        self.drops.append(repr(exc))
                        time.sleep(0.2)
        except BaseException as exc:  # reported by the test, not by the thread
            self.errors.append(exc)
        finally:
            self.ready.set()

    def _read(self, http: httpx.Client) -> None:
        headers = {"Accept": "text/event-stream"}
        if self._last_id is not None:
            headers["Last-Event-ID"] = str(self._last_id)
        with http.stream("GET", "/api/events", headers=headers) as response:
            assert response.status_code == 200, response.read()
            self.connects += 1
            fields: dict[str, str] = {}
            data: list[str] = []
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line:
                    if not line.startswith(":"):
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "data":
                            data.append(value)
                        else:
                            fields[name] = value
                    continue
                self._message(fields, "\n".join(data))
                fields, data = {}, []

    def _message(self, fields: dict[str, str], data: str) -> None:
        kind = fields.get("event", "")
        if not data:
            # The first message of a fresh feed: `id:` of the store's head, and `retry:`.
            if "id" in fields and self._last_id is None:
                self._last_id = int(fields["id"])
            self.ready.set()
            return
        payload = json.loads(data)
        if kind.startswith("content_job."):
            event_id = int(fields["id"])
            self.events.append((event_id, kind, payload["jobId"]))
            self._last_id = event_id
            if kind == "content_job.done":
                self.done.add(payload["jobId"])
        elif kind == "worker.busy":
            self.busy.append(payload["jobId"])
        elif kind == "stream.gap":
            self.gaps.append(payload)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=60)
        assert not self.is_alive(), f"{self.name} did not stop"


def api_get(node: ServeProcess, path: str) -> httpx.Response:
    return httpx.get(node.url + path, headers={"Authorization": f"Bearer {node.token}"}, timeout=10)


# --- 1. two nodes, one database ------------------------------------------------------


@pytest.mark.timeout(400)
def test_two_nodes_share_one_queue_and_one_event_history(pg_url, tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    args = ("--database", pg_url, "--workers", "4")
    with serve(dirs[0], *args) as a, serve(dirs[1], *args) as b:
        nodes = [a, b]
        readers = [
            FeedReader(n.url, n.token, f"feed-{name}") for n, name in zip(nodes, "ab", strict=True)
        ]
        clients = [Client(node.url, node.token, timeout=30) for node in nodes]
        try:
            company = clients[0].create_company("acme")["id"]
            for reader in readers:
                reader.start()
            for reader in readers:
                assert reader.ready.wait(30), "the operator feed did not open"
                assert not reader.errors, reader.errors

            submitted: list[str] = []
            by_node: list[list[str]] = [[], []]
            for batch in range(2 * JOBS_PER_NODE // BATCH):
                which = batch % 2
                jobs = [
                    {"jobType": "noop", "input": {"n": len(submitted) + i}} for i in range(BATCH)
                ]
                ids = [s.job_id for s in clients[which].submit_many(company, jobs)]
                by_node[which] += ids
                submitted += ids
            assert len(set(submitted)) == 2 * JOBS_PER_NODE
            assert [len(ids) for ids in by_node] == [JOBS_PER_NODE, JOBS_PER_NODE]
            expected = set(submitted)

            def all_done_seen() -> bool:
                for reader in readers:
                    assert not reader.errors, (reader.name, reader.errors)
                return all(expected <= reader.done for reader in readers)

            try:
                wait_for("every done event on both operator feeds", all_done_seen)
            except AssertionError as exc:
                missing = [len(expected - r.done) for r in readers]
                raise AssertionError(
                    f"{exc}; done events missing per feed: {missing}\n"
                    f"node a:\n{tail(a)}\nnode b:\n{tail(b)}"
                ) from None
            # What each node did, from the outside: its own workers' counters.
            stats = [api_get(node, "/api/stats").json() for node in nodes]
        finally:
            for reader in readers:
                reader.stop.set()
            for reader in readers:
                if reader.is_alive():
                    reader.finish()
            for client in clients:
                client.close()

    # Both feeds carry the one shared history: same ids, same types, same order.
    seqs = [[(event_id, kind) for event_id, kind, _ in r.events] for r in readers]
    assert seqs[0] == seqs[1]
    ids = [event_id for event_id, _ in seqs[0]]
    assert all(x < y for x, y in itertools.pairwise(ids)), "event ids not increasing"
    assert not any(r.gaps for r in readers)

    # Every job ran exactly once: queued, running, done, one of each.
    per_job: dict[str, Counter[str]] = {}
    for _, kind, job_id in readers[0].events:
        per_job.setdefault(job_id, Counter())[kind] += 1
    assert set(per_job) == expected
    wrong = {
        job_id: dict(kinds)
        for job_id, kinds in per_job.items()
        if kinds
        != Counter({"content_job.queued": 1, "content_job.running": 1, "content_job.done": 1})
    }
    assert not wrong, f"{len(wrong)} jobs with unexpected events, e.g. {list(wrong.items())[:3]}"

    # The work was split: each node's workers ran some, and together they ran each once.
    assert stats[0]["node"] != stats[1]["node"]
    completed = [sum(w["completed"] for w in s["workers"]) for s in stats]
    assert [len(s["workers"]) for s in stats] == [4, 4]
    assert sum(completed) == 2 * JOBS_PER_NODE, completed
    assert all(n > 0 for n in completed), completed
    # worker.busy is node-local (no id, not replayed after a lag): a subset, but disjoint.
    busy = [set(r.busy) for r in readers]
    assert busy[0] and busy[1], [len(x) for x in busy]
    assert not busy[0] & busy[1], "a job was started on both nodes"
    assert busy[0] | busy[1] <= expected
    for s in stats:
        assert s["counts"]["done"] == 2 * JOBS_PER_NODE


# --- 2. migrations -------------------------------------------------------------------


def with_password(url: str) -> tuple[str, str]:
    """The URL with a password in it (a dummy one if it had none: the test server
    trusts local connections), and that password."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    secret = "not-a-real-s3cret"
    netloc = f"{parts.username}:{secret}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc)), secret


@pytest.mark.timeout(200)
def test_migrate_applies_then_reports_up_to_date_and_serve_no_migrate_refuses(
    pg_empty_url, tmp_path
):
    url, secret = with_password(pg_empty_url)
    first = callboard(tmp_path, "migrate", "--database", url)
    assert first.returncode == 0, first.stderr
    assert "applied migrations 1" in first.stdout
    assert pg_empty_url.rpartition("/")[2] in first.stdout
    assert secret not in first.stdout + first.stderr

    again = callboard(tmp_path, "migrate", "--database", url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("schema up to date: ")
    assert "applied migrations" not in again.stdout
    assert secret not in again.stdout + again.stderr

    # The migrated database serves with --no-migrate.
    with serve(tmp_path, "--database", pg_empty_url, "--no-migrate", "--workers", "1") as node:
        ready = httpx.get(node.url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text

    # An empty one does not: exit 2 and one line naming `callboard migrate`.
    empty = pgkit.create_database()
    try:
        refused = callboard(
            tmp_path,
            "serve",
            "--no-migrate",
            "--database",
            with_password(pgkit.url_for(empty))[0],
            "--bind",
            "127.0.0.1:0",
        )
    finally:
        pgkit.drop_database(empty)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, f"exit {refused.returncode}:\n{output[-3000:]}"
    assert "Traceback" not in output
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("callboard: "), last
    assert "callboard migrate" in last
    assert secret not in output


# --- 3. a database outage ------------------------------------------------------------


@contextmanager
def proxied(pg_url: str) -> Iterator[tuple[CuttableProxy, str]]:
    parts = urlsplit(pg_url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
    try:
        yield proxy, urlunsplit(parts._replace(netloc=netloc))
    finally:
        proxy.close()


class EventCollector(threading.Thread):
    """`Client.events()` on the operator feed in a thread (it resumes by itself with
    Last-Event-ID); runtime.stats arrives every second, so `stop` is seen promptly."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(name="events", daemon=True)
        self.client = Client(url, token)
        self.events: list[JobEvent] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.started_feed = threading.Event()

    def run(self) -> None:
        try:
            with self.client, self.client.events(reconnect_for=None) as events:
                for event in events:
                    self.started_feed.set()
                    if isinstance(event, JobEvent):
                        self.events.append(event)
                    if self.stop.is_set():
                        return
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self.started_feed.set()

    def done(self) -> set[str]:
        return {e.job_id for e in self.events if e.type == "content_job.done"}


@pytest.mark.timeout(400)
def test_a_database_outage_fails_fast_and_recovers(pg_url, tmp_path):
    with (
        proxied(pg_url) as (proxy, url),
        serve(tmp_path, "--database", url, "--workers", "2", "--lease-seconds", "10") as node,
    ):
        client = Client(node.url, node.token, timeout=15)
        collector = EventCollector(node.url, node.token)
        try:
            company = client.create_company("acme")["id"]
            collector.start()
            assert collector.started_feed.wait(30), "no event on the operator feed"

            before = client.submit(company, "noop").job_id
            assert client.wait(before, timeout=WAIT).status == "done"
            # Queued through the outage: due while the database is away.
            delayed = client.submit(company, "noop", delay=2).job_id
            # Running across the cut; its outcome is written once the database is back.
            running = client.submit(company, "demo.sleep", {"seconds": 3}, max_attempts=3).job_id
            wait_for("the sleep job to run", lambda: client.get(running).status == "running")

            proxy.cut()
            cut_at = time.monotonic()
            # Submits fail fast with 503 and the typed error; a hang would time out
            # (ConnectionFailed, status 0) instead.
            with pytest.raises(Unavailable) as refused:
                client.submit(company, "noop")
            assert refused.value.status == 503
            raw = httpx.post(
                f"{node.url}/api/companies/{company}/content-jobs",
                json={"jobType": "noop", "input": {}},
                headers={"Authorization": f"Bearer {node.token}"},
                timeout=15,
            )
            assert raw.status_code == 503, raw.text
            assert raw.json()["error"]["code"] in {"store_unavailable", "unavailable"}, raw.text
            with pytest.raises(Unavailable):
                client.get(before)
            ready = httpx.get(node.url + "/readyz", timeout=15)
            assert ready.status_code == 503, ready.text
            assert ready.json()["status"] == "unavailable"
            assert ready.json()["checks"]["store"] is False
            assert node.proc.poll() is None, "the node died with its database"
            # Stay away long enough for the delayed job to fall due and the sleep to end.
            time.sleep(max(0.0, cut_at + 5 - time.monotonic()))

            proxy.restore()

            def submit_after() -> str | None:
                try:
                    return client.submit(company, "noop").job_id
                except Unavailable:
                    return None

            after = wait_for("a submit to work again", submit_after, every=0.5)
            wait_for(
                "/readyz to say ready",
                lambda: httpx.get(node.url + "/readyz", timeout=15).status_code == 200,
                every=0.5,
            )
            accepted = [before, delayed, running, after]
            for job_id in accepted:
                job = client.wait(job_id, timeout=WAIT)
                assert job.status == "done", (job_id, job.status, job.error_message, tail(node))

            # The stream that was open through the outage delivers what came after.
            try:
                wait_for(
                    "the later jobs' done events on the old stream",
                    lambda: collector.errors or {delayed, running, after} <= collector.done(),
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; seen {collector.done()}\n{tail(node)}") from None
            assert not collector.errors, collector.errors
        finally:
            collector.stop.set()
            collector.join(timeout=60)
            client.close()
        assert not collector.is_alive(), "the event collector did not stop"
    # The outage reads as two lines, not a wall of retries and tracebacks.
    loud = [line for line in node.log if " WARNING " in line or " ERROR " in line]
    assert [line.split(" is ", 1)[1][:11] for line in loud] == ["unreachable", "reachable a"], loud
    assert not [line for line in node.log if "Traceback" in line]

    ids = [e.id for e in collector.events]
    assert all(x < y for x, y in itertools.pairwise(ids))
    for job_id in (delayed, after):
        kinds = [e.type for e in collector.events if e.job_id == job_id]
        assert kinds.count("content_job.done") == 1, kinds


# --- the README's PostgreSQL commands, as written ------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "postgresql://callboard@db.internal:5432/callboard"
README_BUCKET = "s3://callboard-assets/prod"
#: What the README's exports set: the standard AWS settings, nothing of callboard's.
AWS_SETTINGS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL_S3"]


def test_readme_postgres_commands_work_as_written(pg_empty_url, s3_url, tmp_path):
    """The ```bash block of the README's PostgreSQL section, with its example database
    and bucket pointed at real ones (an empty database; a bucket of moto's server, whose
    AWS settings the `s3_url` fixture puts in the environment in place of the README's
    example values): migrate applies the schema, serve starts on it and stores an
    upload in the bucket."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Several nodes on PostgreSQL") :]
    block = section[section.index("```bash\n") + len("```bash\n") : section.index("```\n", 8)]
    commands = [
        shlex.split(line, comments=True)
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip()
    ]
    exports = [command for command in commands if command[0] == "export"]
    assert [arg.split("=", 1)[0] for export in exports for arg in export[1:]] == AWS_SETTINGS
    runs = [command for command in commands if command[0] != "export"]
    assert [command[:2] for command in runs] == [["callboard", "migrate"], ["callboard", "serve"]]
    assert all(README_URL in command for command in runs), runs
    assert README_BUCKET in runs[1], runs[1]
    real = {README_URL: pg_empty_url, README_BUCKET: s3_url}
    migrate_args = [real.get(arg, arg) for arg in runs[0][1:]]
    done = callboard(tmp_path, *migrate_args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("applied migrations 1"), done.stdout
    serve_args = [real.get(arg, arg) for arg in runs[1][2:]]
    # The README binds every interface on port 8000; the test takes a free loopback port.
    at = serve_args.index("--bind")
    del serve_args[at : at + 2]
    with serve(tmp_path, *serve_args, "--no-migrate") as node:
        ready = api_get(node, "/readyz")
        assert ready.status_code == 200, ready.text
        with Client(node.url, node.token, timeout=30) as client:
            company = client.create_company("acme")["id"]
            source = tmp_path / "brief.txt"
            source.write_text("into the bucket")
            asset = client.upload(source, company)
    assert s3kit.stored(s3_url) == [asset.object_key]
