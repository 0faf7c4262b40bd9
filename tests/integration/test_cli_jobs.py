"""`callboard submit | jobs | show | cancel | retry` through the installed entry point,
in a subprocess, against a real `callboard serve`."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest
from cli_kit import CALLBOARD, callboard, callboard_all, start_callboard, wait_for
from serve_process import ServeProcess, serve

from callboard.cli.main import build_parser, main
from callboard.client import Client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    with serve(tmp_path_factory.mktemp("cli-jobs")) as s:
        assert callboard(s, "companies", "create", "acme").returncode == 0
        yield s


@pytest.fixture
def client(server: ServeProcess) -> Iterator[Client]:
    with Client(server.url, server.token) as c:
        yield c


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("callboard"), lines
    return lines[0]


def test_submit_follow_a_job_that_succeeds(server: ServeProcess, client: Client):
    result = callboard(
        server, "submit", "demo.sleep", "--input", '{"seconds": 0.5}', "--follow", "--priority", "3"
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert str(uuid.UUID(job_id)) == job_id  # stdout is the job id, nothing else
    progress = result.stderr.strip().splitlines()
    # One line per event when stderr is not a terminal, percent rising to 100.
    percents = [float(line.split()[1].rstrip("%")) for line in progress[:-1]]
    assert progress[0].startswith(("queued", "running")) and percents == sorted(percents)
    assert any("sleeping" in line for line in progress) and percents[-1] == 100
    assert progress[-1].startswith(f"job {job_id} done in ")
    job = client.get(job_id)
    assert job.status == "done" and job.priority == 3


def test_submit_follow_a_job_that_fails(server: ServeProcess):
    result = callboard(
        server,
        "submit",
        "demo.fail",
        "--input",
        '{"message": "the printer is on fire"}',
        "--follow",
    )
    assert result.returncode == 1
    job_id = result.stdout.strip()
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"callboard: job {job_id} failed after 1 attempt(s): the printer is on fire"
    assert "Traceback" not in result.stderr


def test_submit_reads_input_from_a_file_and_prints_json(server: ServeProcess, client: Client):
    (server.data_dir.parent / "input.json").write_text('{"seconds": 0}')
    result = callboard(
        server,
        "submit",
        "demo.sleep",
        "--input-file",
        "input.json",
        "--company",
        "acme",
        "--source-task",
        "task-9",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted["status"] == "queued"
    job = client.wait(submitted["jobId"], timeout=30)
    assert job.input == {"seconds": 0} and job.source_task_id == "task-9"


def test_jobs_json_table_show_cancel_and_retry(server: ServeProcess, client: Client):
    failed = client.wait(
        client.submit("acme", "demo.fail", {"message": "boom"}, source_task_id="t-1").job_id,
        timeout=30,
    )
    done = client.wait(client.submit("acme", "noop").job_id, timeout=30)

    listed, only_failed, table, shown, detail = callboard_all(
        server,
        ["jobs", "--json"],
        ["jobs", "--json", "--status", "failed", "--company", "acme"],
        ["jobs", "--type", "demo.fail", "--limit", "1"],
        ["show", failed.id],
        ["show", failed.id, "--json"],
    )
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert [j["id"] for j in jobs][:2] == [done.id, failed.id]  # newest first
    assert set(jobs[0]) >= {"id", "companyId", "jobType", "status", "progress", "createdAt"}
    failures = json.loads(only_failed.stdout)
    assert {j["status"] for j in failures} == {"failed"}
    assert failed.id in {j["id"] for j in failures}

    assert table.returncode == 0, table.stderr
    header, row = table.stdout.strip().splitlines()
    assert header.split()[:4] == ["JOB", "ID", "COMPANY", "TYPE"]
    assert row.split()[:4] == [failed.id, "acme", "demo.fail", "failed"] and "boom" in row

    assert shown.returncode == 0, shown.stderr
    assert f"id              {failed.id}" in shown.stdout
    assert "errorMessage    boom" in shown.stdout and "sourceTaskId    t-1" in shown.stdout
    assert "content_job.queued" in shown.stdout and "content_job.failed" in shown.stdout
    details = json.loads(detail.stdout)
    assert details["job"]["id"] == failed.id and details["assets"] == []
    kinds = [e["type"] for e in details["events"]]
    assert kinds == ["content_job.queued", "content_job.running", "content_job.failed"]

    retried = callboard(server, "retry", failed.id)
    assert retried.returncode == 0 and retried.stdout.strip() == f"queued job {failed.id} again"
    refused = callboard(server, "cancel", done.id)
    assert refused.returncode == 1
    assert one_error_line(refused) == f"callboard: cannot cancel job {done.id} while it is done"
    missing, nowhere = callboard_all(
        server, ["show", str(uuid.uuid4())], ["jobs", "--company", "nope"]
    )
    assert missing.returncode == 1 and "not found" in one_error_line(missing)
    assert nowhere.returncode == 1
    assert one_error_line(nowhere) == "callboard: no company named or with id 'nope'"

    sleeper = client.submit("acme", "demo.sleep", {"seconds": 30}).job_id
    cancelled = callboard(server, "cancel", sleeper, "--json")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["id"] == sleeper
    assert client.wait(sleeper, timeout=30).status == "cancelled"


@pytest.mark.parametrize("cancel", [False, True], ids=["leaves-it-running", "cancels"])
def test_ctrl_c_while_following(server: ServeProcess, client: Client, cancel: bool):
    args = ["submit", "demo.sleep", "--input", '{"seconds": 30}', "--follow"]
    proc = start_callboard(server, *args, *(["--cancel-on-interrupt"] if cancel else []))
    try:
        job_id = proc.stdout.readline().strip()
        for line in proc.stderr:  # one line per event: wait until the job runs
            if line.startswith("running"):
                break
        else:
            raise AssertionError("the job never ran")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert "Traceback" not in err
    if cancel:
        last = err.strip().splitlines()[-1]
        expected = f"callboard: interrupted; (cancelled|asked to cancel) job {job_id}"
        assert re.fullmatch(expected, last), last
        assert client.wait(job_id, timeout=30).status == "cancelled"
    else:
        assert f"interrupted; job {job_id} keeps running" in err
        assert client.get(job_id).status == "running"
        client.cancel(job_id)
        wait_for(lambda: client.get(job_id).terminal, what="the job to stop")


def test_usage_connection_and_auth_errors_are_one_line_with_exit_2(server: ServeProcess):
    cases = {
        "unknown type": (["submit", "no.such.type"], "unknown job type 'no.such.type'"),
        "bad url": (["jobs", "--url", "http://127.0.0.1:9"], "cannot reach http://127.0.0.1:9"),
        "bad token": (["jobs", "--token", "cb_000000000000_nope"], "bearer token is not valid"),
    }
    results = callboard_all(server, *(args for args, _ in cases.values()))
    for (name, (_, expected)), result in zip(cases.items(), results, strict=True):
        assert result.returncode == 2, (name, result.stderr)
        assert expected in one_error_line(result), (name, result.stderr)
    noisy = callboard(server, "--debug", "jobs", "--url", "http://127.0.0.1:9")
    assert noisy.returncode != 0 and "Traceback" in noisy.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--input", "{nope"], "callboard: --input: not valid JSON"),
        (["--input", "[1]"], "callboard: --input: the input must be a JSON object, got list"),
        (["--input-file", "missing.json"], "callboard: --input-file missing.json: No such file"),
        (["--priority", "high"], "callboard submit: argument --priority: invalid int value"),
        (["--delay", "-1"], "expected a number of seconds >= 0, got '-1'"),
    ],
)
def test_bad_arguments_are_one_line_with_exit_2(args, expected, capsys, tmp_path, monkeypatch):
    """Refused before anything is sent (in-process: no server needed)."""
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["submit", "noop", "--url", "http://127.0.0.1:9", "--token", "t", *args])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err, err


def test_every_command_explains_itself_with_an_example():
    parser = build_parser()

    def walk(p, path):
        for action in p._actions:
            if action.choices and hasattr(action, "_name_parser_map"):
                for name, sub in action._name_parser_map.items():
                    yield from walk(sub, [*path, name])
        yield path, p.format_help()

    helps = dict((" ".join(path), text) for path, text in walk(parser, []))
    for command in ("submit", "jobs", "show", "cancel", "retry", "events", "assets", "gc"):
        assert command in helps
    for command, text in helps.items():
        assert "example" in text.lower() and "callboard " in text, command


def test_a_url_that_is_not_a_callboard_server_is_one_line_and_exit_2(tmp_path):
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>hello</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        for bad in (url, "http://[::1"):
            result = subprocess.run(
                [CALLBOARD, "jobs", "--url", bad, "--token", "t"],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
            assert result.returncode == 2, result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert "Traceback" not in result.stderr
    finally:
        httpd.shutdown()
        httpd.server_close()
