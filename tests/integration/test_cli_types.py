"""`callboard types`, the demo types' switch, and the refusal of a handler module that
takes a built-in name: `callboard serve` processes as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cli_kit import callboard, callboard_all
from serve_process import ServeProcess, serve, serve_handlers

pytestmark = pytest.mark.slow

HANDLERS = """
import callboard

board = callboard.Board()


@board.handler("haiku", timeout=120, max_attempts=3, concurrency=4)
async def haiku(ctx: callboard.JobContext) -> None:
    pass
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    """A production-like node: its own handlers, the demo types left off."""
    tmp = tmp_path_factory.mktemp("cli-types")
    with serve_handlers(tmp, "typed_handlers", HANDLERS, demo_types=False) as s:
        assert callboard(s, "companies", "create", "acme").returncode == 0
        yield s


def test_types_lists_every_type_with_its_defaults(server):
    table, as_json = callboard_all(server, ["types"], ["types", "--json"])
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == [
        "TYPE   TIMEOUT  MAX ATTEMPTS  CONCURRENCY  BUILT-IN",
        "haiku  120s     3             4            no",
        "noop   none     1             any          yes",
    ]
    assert json.loads(as_json.stdout) == [
        {
            "jobType": "haiku",
            "timeoutSeconds": 120.0,
            "maxAttempts": 3,
            "concurrency": 4,
            "builtIn": False,
        },
        {
            "jobType": "noop",
            "timeoutSeconds": None,
            "maxAttempts": 1,
            "concurrency": None,
            "builtIn": True,
        },
    ]


def test_a_demo_type_on_a_node_without_them_says_how_to_turn_them_on(server):
    refused = callboard(server, "submit", "demo.render", "--company", "acme")
    assert refused.returncode == 2  # bad input, as every unknown type
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "unknown job type 'demo.render'" in lines[0]
    assert "callboard serve --demo-types" in lines[0]
    assert "CALLBOARD_DEMO_TYPES=true" in lines[0]


def test_serve_demo_types_turns_them_on(tmp_path):
    with serve(tmp_path, "--demo-types", demo_types=False) as node:
        listed = callboard(node, "types", "--json")
    assert listed.returncode == 0, listed.stderr
    builtins = {t["jobType"] for t in json.loads(listed.stdout) if t["builtIn"]}
    assert builtins == {"noop", "demo.sleep", "demo.fail", "demo.render"}


def test_serve_refuses_a_handler_module_that_takes_a_builtin_name(tmp_path):
    (tmp_path / "shadowing.py").write_text(
        "async def mine(ctx):\n    pass\n\n\ndef register(board):\n"
        "    board.handler('demo.sleep')(mine)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "callboard", "serve", "--handlers", "shadowing"],
        capture_output=True,
        text=True,
        env={**os.environ, "CALLBOARD_DATA_DIR": str(tmp_path), "PYTHONPATH": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "callboard: --handlers: module 'shadowing' registers 'demo.sleep', a built-in job "
        "type; register its handler under another name"
    )
