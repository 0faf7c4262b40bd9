"""Job results end to end: a `callboard serve` process running a handler module whose
handlers return values (CALLBOARD_RESULT_MAX_BYTES set in its environment), the sync
`Client`'s wait, and `callboard show` through the installed entry point."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cli_kit import callboard, callboard_all
from serve_process import ServeProcess, serve_handlers

from callboard.client import Client

pytestmark = pytest.mark.slow

HANDLERS = """
import callboard

board = callboard.Board()


@board.handler("echo")
async def echo(ctx: callboard.JobContext) -> object:
    return ctx.input.get("value")
"""

VALUE = {"title": "Résumé ✓ 🎉", "pages": [1, 2.5, None, True], "order": {"z": 1, "a": 2}}
LIMIT = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("cli-results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALLBOARD_RESULT_MAX_BYTES", str(LIMIT))
        with serve_handlers(tmp, "result_handlers", HANDLERS) as s:
            assert callboard(s, "companies", "create", "acme").returncode == 0
            yield s


@pytest.fixture
def client(server: ServeProcess) -> Iterator[Client]:
    with Client(server.url, server.token) as c:
        yield c


def test_the_clients_wait_and_callboard_show_give_the_result(server, client):
    short = client.wait(client.submit("acme", "echo", {"value": VALUE}).job_id, timeout=30)
    assert short.status == "done" and short.result == VALUE
    assert list(short.result["order"]) == ["z", "a"]
    assert client.get(short.id) == short
    long_value = {"rows": [{"name": f"row {i}", "ok": True} for i in range(40)]}
    long = client.wait(client.submit("acme", "echo", {"value": long_value}).job_id, timeout=30)
    text = client.wait(client.submit("acme", "echo", {"value": "plain ✓"}).job_id, timeout=30)
    none = client.wait(client.submit("acme", "echo").job_id, timeout=30)

    shown, shown_json, shown_long, shown_text, shown_none = callboard_all(
        server,
        ["show", short.id],
        ["show", short.id, "--json"],
        ["show", long.id],
        ["show", text.id],
        ["show", none.id],
    )
    assert shown.returncode == 0, shown.stderr
    compact = json.dumps(VALUE, ensure_ascii=False, separators=(", ", ": "))
    assert f"result          {compact}\n" in shown.stdout
    assert json.loads(shown_json.stdout)["job"]["result"] == VALUE

    # Too long for a line: a section of its own, which is the result as JSON.
    assert "result          (below)\n" in shown_long.stdout
    section = shown_long.stdout.split("\nresult\n", 1)[1].split("\nassets (", 1)[0]
    assert json.loads(section) == long_value
    # A string is shown as JSON (quoted), nothing as nothing.
    assert 'result          "plain ✓"\n' in shown_text.stdout
    assert "result          \n" in shown_none.stdout


def test_a_result_over_the_configured_limit_fails_the_job(server, client):
    big = "x" * LIMIT
    failed = client.wait(client.submit("acme", "echo", {"value": big}).job_id, timeout=30)
    assert failed.status == "failed" and failed.result is None
    message = (
        f"the result is 4.0 KiB ({LIMIT + 2} bytes) of JSON; "
        "results are at most 4 KiB (4096 bytes): CALLBOARD_RESULT_MAX_BYTES"
    )
    assert failed.error_message == message
    shown = callboard(server, "show", failed.id)
    assert shown.returncode == 0, shown.stderr
    assert f"errorMessage    {message}\n" in shown.stdout
    assert f"error: {message}" in shown.stdout  # the failed event's line
