"""`callboard serve --processes N` as an operator runs it: a real parent with real
children on one port, a real PostgreSQL database, real signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

WAIT = 60.0  # generous: the suite may run on a loaded machine
READY = re.compile(r"all (\d+) processes serve (http://\S+);")


class Group:
    """A `serve --processes` parent in a process group of its own (as a shell puts a
    foreground command), its output (the children's too) collected by a thread."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.data_dir = tmp_path / "callboard-data"
        env = {**os.environ, "CALLBOARD_DATA_DIR": str(self.data_dir)}
        env.pop("CALLBOARD_DATABASE_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callboard", "serve", "--bind", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=tmp_path,
            process_group=0,
        )
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.log)

    def wait_ready(self) -> str:
        found = wait_for("the group to serve", lambda: READY.search(self.text()), self)
        return found.group(2)

    def stats(self, url: str) -> dict[str, Any]:
        token = (self.data_dir / "operator.token").read_text().strip()
        # A new connection each time: the kernel spreads connections, not requests.
        answer = httpx.get(
            url + "/api/stats", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        answer.raise_for_status()
        return answer.json()

    def nodes_answering(self, url: str, want: int) -> set[str]:
        """Node ids seen answering on the one port, until `want` distinct ones."""
        seen: set[str] = set()

        def enough() -> bool:
            seen.add(self.stats(url)["node"])
            return len(seen) >= want

        wait_for(f"{want} nodes to answer", enough, self, every=0.01)
        return seen

    def wait_exit(self) -> int:
        try:
            code = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError("the group did not stop:\n" + self.text()) from None
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_for(
    what: str, check: Callable[[], Any], group: Group, every: float = 0.1, parent: bool = True
) -> Any:
    """Poll `check` until it holds; give up early when the parent ended (unless
    `parent` is False: the test ended it)."""
    deadline = time.monotonic() + WAIT
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline or (parent and group.proc.poll() is not None):
            raise AssertionError(f"gave up waiting for {what}:\n{group.text()}")
        time.sleep(every)


@contextmanager
def group_of(tmp_path: Path, *args: str) -> Iterator[Group]:
    group = Group(tmp_path, *args)
    try:
        yield group
    finally:
        group.close()


def pid_of(node: str) -> int:
    return int(node.split(":")[1])  # host:pid:random


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_two_processes_share_one_port_and_stop_together_on_sigterm(pg_url, tmp_path):
    with group_of(tmp_path, "--processes", "2", "--database", pg_url) as group:
        url = group.wait_ready()
        nodes = group.nodes_answering(url, 2)
        pids = {pid_of(node) for node in nodes}
        assert group.proc.pid not in pids  # the parent serves nothing itself
        # One job through the group, run by whichever node claims it.
        token = (group.data_dir / "operator.token").read_text().strip()
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as http:
            company = http.post("/api/companies", json={"name": "acme"}).json()["id"]
            job = http.post(f"/api/companies/{company}/content-jobs", json={"jobType": "noop"})
            assert job.status_code == 202, job.text
            path = f"/api/companies/{company}/content-jobs/{job.json()['jobId']}"
            wait_for("the job", lambda: http.get(path).json()["status"] == "done", group)
        group.proc.send_signal(signal.SIGTERM)  # to the parent only, as a supervisor does
        assert group.wait_exit() == 0, group.text()
    text = group.text()
    assert not any(alive(pid) for pid in pids)
    for name in ("p1", "p2"):
        assert f"[{name}] callboard.cli: received SIGTERM; draining" in text
        assert f"[{name}] callboard.cli: stopped" in text
    assert "[main] callboard.processes: all 2 processes stopped" in text
    # Made once, by the first child, not raced by both.
    assert text.count("created an operator token") == 1
    assert "Traceback" not in text


def test_a_killed_child_is_replaced_and_ctrl_c_stops_the_group(pg_url, tmp_path):
    with group_of(tmp_path, "--processes", "2", "--database", pg_url) as group:
        url = group.wait_ready()
        before = group.nodes_answering(url, 2)
        victim = pid_of(sorted(before)[0])
        os.kill(victim, signal.SIGKILL)
        # Its replacement answers on the same port, with a node id of its own.
        replaced = set()

        def replacement_answers() -> bool:
            replaced.add(group.stats(url)["node"])
            return bool(replaced - before)

        wait_for("a replacement to answer", replacement_answers, group, every=0.05)
        assert "ended with signal SIGKILL; starting it again" in group.text()
        new_pids = {pid_of(node) for node in replaced - before}
        # A terminal's Ctrl-C: SIGINT to the foreground process group.
        os.killpg(group.proc.pid, signal.SIGINT)
        assert group.wait_exit() == 0, group.text()
    text = group.text()
    assert "[main] callboard.processes: received SIGINT; stopping 2 processes" in text
    assert text.count("received SIGTERM; draining") == 2  # exactly one signal each
    assert not any(alive(pid) for pid in new_pids | {pid_of(n) for n in before})
    assert "Traceback" not in text


def test_sigterm_to_every_process_at_once_still_drains_each_child_once(pg_url, tmp_path):
    # systemd's default stop signals every process of the unit, and the parent passes
    # one more SIGTERM on to each child: the second must not cut a child's drain short.
    with group_of(tmp_path, "--processes", "2", "--database", pg_url) as group:
        url = group.wait_ready()
        pids = {pid_of(node) for node in group.nodes_answering(url, 2)}
        for pid in (*pids, group.proc.pid):
            os.kill(pid, signal.SIGTERM)
        assert group.wait_exit() == 0, group.text()
    text = group.text()
    assert text.count("received SIGTERM; draining") == 2
    assert text.count("callboard.cli: stopped") == 2
    assert "all 2 processes stopped" in text


def test_the_children_drain_when_the_parent_is_killed(pg_url, tmp_path):
    with group_of(tmp_path, "--processes", "2", "--database", pg_url) as group:
        url = group.wait_ready()
        pids = {pid_of(node) for node in group.nodes_answering(url, 2)}
        group.proc.kill()  # the parent alone: its children are in groups of their own
        group.proc.wait()
        gone = lambda: not any(alive(p) for p in pids)  # noqa: E731
        wait_for("the children to stop", gone, group, parent=False)
        last_lines = lambda: group.text().count("callboard.cli: stopped") == 2  # noqa: E731
        wait_for("both children's last line", last_lines, group, parent=False)
    assert group.text().count("the parent process ended; draining") == 2


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLBOARD_DATA_DIR": str(tmp_path / "callboard-data")}
    env.pop("CALLBOARD_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "callboard", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )


def test_sqlite_is_refused_with_one_line_and_exit_2(tmp_path):
    result = run(tmp_path, "--processes", "2", "--bind", "127.0.0.1:0")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "callboard: processes 2: more than one process needs PostgreSQL "
        "(--database postgresql://...); the embedded SQLite store has one writer per file"
    ]
    assert not (tmp_path / "callboard-data" / "callboard.db").exists()


def test_the_environment_asks_for_processes_too(tmp_path, monkeypatch):
    monkeypatch.setenv("CALLBOARD_PROCESSES", "3")
    result = run(tmp_path, "--bind", "127.0.0.1:0")
    assert result.returncode == 2
    assert "processes 3: more than one process needs PostgreSQL" in result.stderr


def test_a_port_in_use_is_one_line_from_the_parent(pg_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            tmp_path, "--processes", "2", "--database", pg_url, "--bind", f"127.0.0.1:{port}"
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"callboard: bind 127.0.0.1:{port}: cannot listen there: Address already in use"
    ]


def test_a_child_that_cannot_start_stops_the_group_with_its_exit_code(pg_empty_url, tmp_path):
    # An empty database with migrations refused: the first child says why, once.
    result = run(
        tmp_path, "--processes", "2", "--database", pg_empty_url, "--no-migrate",
        "--bind", "127.0.0.1:0",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("callboard: ")] != []
    assert "started p2" not in result.stderr  # p1 failed first: nobody else started
    assert "p1 (pid" in result.stderr and "ended with exit code 2 before it was ready" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
