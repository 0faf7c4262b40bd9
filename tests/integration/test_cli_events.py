"""`callboard events` through the installed entry point against a real server: JSON
lines in id order, `--since` resumes exactly, and a live tail ends on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from cli_kit import CALLBOARD, callboard, callboard_all, cli_env, start_callboard
from serve_process import serve

from callboard.client import Client

pytestmark = pytest.mark.slow


def test_events_json_in_order_resume_with_since_and_tail_live(tmp_path):
    with serve(tmp_path) as server, Client(server.url, server.token) as client:
        assert callboard(server, "companies", "create", "acme").returncode == 0
        jobs = [
            client.wait(client.submit("acme", "noop").job_id, timeout=30),
            client.wait(client.submit("acme", "demo.fail", {"message": "no"}).job_id, timeout=30),
        ]
        stored = [e for job in jobs for e in client.history(job.id)]
        assert len(stored) == 6

        everything, resumed, text = callboard_all(
            server,
            ["events", "--since", "0", "--json", "--count", "6"],
            ["events", "--since", str(stored[2].id), "--json", "--count", "3"],
            ["events", "--company", "acme", "--since", "0", "--count", "2"],
        )
        assert everything.returncode == 0, everything.stderr
        lines = [json.loads(line) for line in everything.stdout.splitlines()]
        assert [e["id"] for e in lines] == [e.id for e in stored]  # every event, in order
        assert [e["type"] for e in lines] == [str(e.type) for e in stored]
        assert lines[-1]["type"] == "content_job.failed"
        assert lines[-1]["data"]["job"]["errorMessage"] == "no"
        assert {e["data"]["jobId"] for e in lines} == {job.id for job in jobs}

        # --since ID: exactly what came after ID.
        assert [json.loads(x)["id"] for x in resumed.stdout.splitlines()] == [
            e.id for e in stored[3:]
        ]
        first, second = text.stdout.splitlines()
        assert first.startswith(f"#{stored[0].id}  content_job.queued  acme  noop  {jobs[0].id}")
        assert second.startswith(f"#{stored[1].id}  content_job.running")

        # A live tail from the last id sees a new job's events as they happen; Ctrl-C
        # ends it with 130.
        tail = start_callboard(server, "events", "--json", "--since", str(stored[-1].id))
        try:
            fresh = client.submit("acme", "demo.sleep", {"seconds": 0.2}).job_id
            seen = []
            while not seen or seen[-1]["type"] != "content_job.done":
                seen.append(json.loads(tail.stdout.readline()))
            tail.send_signal(signal.SIGINT)
            _, err = tail.communicate(timeout=20)
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.communicate()
        assert tail.returncode == 130 and err.strip() == "callboard: interrupted"
        assert {e["data"]["jobId"] for e in seen} == {fresh}
        assert seen[0]["type"] == "content_job.queued" and seen[0]["id"] == stored[-1].id + 1
        ids = [e["id"] for e in seen]
        assert ids == sorted(set(ids))

        # Piped into a reader that stops early, it ends once the reader has gone, though
        # the feed is quiet now and it has nothing more to write: as `cat` would, by
        # SIGPIPE (it used to wait for the next event, or exit 1 if it raced one).
        piped = subprocess.run(
            [
                "bash",
                "-c",
                f'{CALLBOARD} events --since 0 --json | head -n 1; echo "${{PIPESTATUS[0]}}"',
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=server.data_dir.parent,
            env=cli_env(server),
        )
        first, status = piped.stdout.splitlines()
        assert json.loads(first)["id"] == stored[0].id
        assert status == str(128 + signal.SIGPIPE), piped.stderr
