"""Nodes see each other, as operators run them: real `callboard serve` processes.

Two nodes on one PostgreSQL database, each with its own data directory and so its
own file:// storage, cannot serve each other's assets: the second says so in its log
at start and in `/readyz`, and the first once it sees the second. On one shared
bucket, or alone on SQLite, nothing is said."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_process import ServeProcess, serve

pytestmark = pytest.mark.slow

#: The presence actor's beat (actors/presence.py), and some slack for a busy machine.
WITHIN = 5.0 + 10.0
WARNING = "this node's database, and this node keeps its assets in file://"


def readyz(node: ServeProcess) -> dict[str, Any]:
    answer = httpx.get(node.url + "/readyz", timeout=10)
    assert answer.status_code == 200, answer.text  # a warning never makes a node unready
    return answer.json()


def nodes(node: ServeProcess) -> list[dict[str, Any]]:
    answer = httpx.get(
        node.url + "/api/nodes", headers={"Authorization": f"Bearer {node.token}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def warnings_in_log(node: ServeProcess, text: str) -> list[str]:
    return [line for line in node.log if "WARNING" in line and text in line]


def wait_for(what: str, check: Callable[[], Any], within: float = WITHIN) -> Any:
    deadline = time.monotonic() + within
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(0.2)
    return result


def dirs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return a, b


@pytest.mark.timeout(120)
def test_two_nodes_on_their_own_disks_warn_that_they_cannot_share_assets(pg_url, tmp_path):
    dir_a, dir_b = dirs(tmp_path)
    with serve(dir_a, "--database", pg_url) as a:
        alone = readyz(a)
        assert alone["nodes"] == 1 and alone["warnings"] == []
        assert warnings_in_log(a, WARNING) == []

        with serve(dir_b, "--database", pg_url) as b:
            # b saw a at its first announcement, before it served a request.
            [line] = warnings_in_log(b, WARNING)
            assert "1 other node shares this node's database" in line
            assert f"keeps its assets in {(dir_b / 'callboard-data' / 'assets').as_uri()}" in line
            assert "assets written on the other nodes cannot be served here" in line
            assert "--storage-url s3://" in line
            ready_b = readyz(b)
            assert ready_b["status"] == "ready" and ready_b["nodes"] == 2
            [warning] = ready_b["warnings"]
            assert warning in line and "cannot be served here" in warning

            # a sees b at its next beat, says so once, and shows it.
            wait_for("a to see b", lambda: readyz(a)["nodes"] == 2)
            [line_a] = wait_for("a's warning", lambda: warnings_in_log(a, WARNING))
            assert "1 other node shares this node's database" in line_a
            assert len(readyz(a)["warnings"]) == 1

            listed = nodes(a)
            assert [n["id"] for n in listed] == [n["id"] for n in nodes(b)]
            assert [n["storage"] for n in listed] == [
                (d / "callboard-data" / "assets").as_uri() for d in (dir_a, dir_b)
            ]
            assert all(n["pid"] and n["host"] and "noop" in n["jobTypes"] for n in listed)

        # b stopped cleanly and deleted its row: a is alone again at its next beat.
        wait_for("a to be alone", lambda: readyz(a) == alone)
        assert len(nodes(a)) == 1
        assert len(warnings_in_log(a, WARNING)) == 1  # nothing more was said
    assert len(warnings_in_log(b, WARNING)) == 1


@pytest.mark.timeout(120)
def test_two_nodes_on_one_bucket_say_nothing(pg_url, s3_url, tmp_path):
    dir_a, dir_b = dirs(tmp_path)
    args = ("--database", pg_url, "--storage-url", s3_url)
    with serve(dir_a, *args) as a, serve(dir_b, *args) as b:
        wait_for("each to see the other", lambda: readyz(a)["nodes"] == readyz(b)["nodes"] == 2)
        for node in (a, b):
            ready = readyz(node)
            assert ready["warnings"] == [] and ready["checks"]["storage"] is True
            assert [n["storage"] for n in nodes(node)] == [s3_url, s3_url]
    for node in (a, b):
        assert warnings_in_log(node, "callboard.presence") == []


@pytest.mark.timeout(120)
def test_a_node_on_its_own_bucket_warns_of_the_others(pg_url, s3_url, tmp_path):
    """One node on the bucket, one on its own disk: each warns, the bucket's node that
    the other keeps its assets elsewhere."""
    dir_a, dir_b = dirs(tmp_path)
    with (
        serve(dir_a, "--database", pg_url, "--storage-url", s3_url) as a,
        serve(dir_b, "--database", pg_url) as b,
    ):
        [line] = warnings_in_log(b, WARNING)
        assert "1 other node shares" in line
        [elsewhere] = wait_for("a's warning", lambda: warnings_in_log(a, "keeps assets elsewhere"))
        assert f"elsewhere than this node ({s3_url})" in elsewhere
        assert (dir_b / "callboard-data" / "assets").as_uri() in elsewhere
        assert len(readyz(a)["warnings"]) == 1
        assert len(readyz(b)["warnings"]) == 2  # its own disk, and a's bucket


@pytest.mark.timeout(60)
def test_a_node_on_sqlite_says_nothing(tmp_path):
    with serve(tmp_path) as node:
        ready = readyz(node)
        assert ready["nodes"] == 1 and ready["warnings"] == []
        [me] = nodes(node)
        assert me["storage"] == (tmp_path / "callboard-data" / "assets").as_uri()
    assert warnings_in_log(node, "callboard.presence") == []
