"""`callboard jobs` filters and limits, bulk `retry` / `cancel`, and `prune`, through
the installed entry point against a real `callboard serve`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cli_kit import callboard, wait_for
from serve_process import ServeProcess, serve

from callboard.client import Client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    with serve(tmp_path_factory.mktemp("cli-bulk")) as s:
        yield s


@pytest.fixture
def client(server: ServeProcess) -> Iterator[Client]:
    with Client(server.url, server.token) as c:
        yield c


@pytest.fixture
def company(server: ServeProcess, client: Client, request) -> str:
    """A company of the test's own, so counts are the test's alone."""
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    client.create_company(name)
    return name


def failed(client: Client, company: str, n: int) -> list[str]:
    ids = [client.submit(company, "demo.fail").job_id for _ in range(n)]
    for job_id in ids:
        wait_for(lambda j=job_id: client.get(j).status == "failed", what=f"{job_id} failed")
    return ids


def listed(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [job["id"] for job in json.loads(result.stdout)]


def test_jobs_keeps_every_status_given(server: ServeProcess, client: Client, company: str):
    # The bug: argparse kept only the last --status.
    queued = client.submit(company, "noop", delay=3600).job_id
    running = client.submit(company, "demo.sleep", {"seconds": 30}).job_id
    wait_for(lambda: client.get(running).status == "running", what="running")
    both = callboard(
        server, "jobs", "--company", company, "--status", "queued", "--status", "running", "--json"
    )
    assert listed(both) == [running, queued]
    commas = callboard(server, "jobs", "--company", company, "--status", "queued,running", "--json")
    assert listed(commas) == [running, queued]
    bad = callboard(server, "jobs", "--status", "queued,bogus")
    assert bad.returncode == 2 and "bogus" in bad.stderr
    client.cancel(running)


def test_jobs_says_when_more_match_than_it_shows(
    server: ServeProcess, client: Client, company: str
):
    # The bug: 50 rows, and nothing said there were more.
    client.submit_many(company, [{"jobType": "noop", "delaySeconds": 3600}] * 53)
    capped = callboard(server, "jobs", "--company", company)
    assert capped.returncode == 0
    assert len(capped.stdout.strip().splitlines()) == 1 + 50  # the header and 50 rows
    assert "more match" in capped.stderr and "--all" in capped.stderr
    everything = callboard(server, "jobs", "--company", company, "--all", "--json")
    assert len(listed(everything)) == 53 and everything.stderr == ""
    enough = callboard(server, "jobs", "--company", company, "--limit", "53", "--json")
    assert len(listed(enough)) == 53 and enough.stderr == ""
    fewer = callboard(server, "jobs", "--company", company, "--limit", "5", "--json")
    assert len(listed(fewer)) == 5 and "showing the newest 5" in fewer.stderr
    both = callboard(server, "jobs", "--limit", "5", "--all")
    assert both.returncode == 2


def test_jobs_by_creation_time(server: ServeProcess, client: Client, company: str):
    job = client.submit(company, "noop", delay=3600).job_id
    assert listed(callboard(server, "jobs", "--company", company, "--since", "1h", "--json")) == [
        job
    ]
    assert listed(callboard(server, "jobs", "--company", company, "--before", "1h", "--json")) == []
    iso = "2000-01-01T00:00:00Z"
    assert listed(callboard(server, "jobs", "--company", company, "--since", iso, "--json")) == [
        job
    ]
    bad = callboard(server, "jobs", "--since", "yesterday")
    assert bad.returncode == 2 and "yesterday" in bad.stderr
    empty = callboard(server, "jobs", "--since", "1h", "--before", "2h")
    assert empty.returncode == 2 and "no job can match" in empty.stderr


def test_retry_by_filter_with_a_dry_run(server: ServeProcess, client: Client, company: str):
    ids = failed(client, company, 3)
    queued = client.submit(company, "noop", delay=3600).job_id
    dry = callboard(server, "retry", "--company", company, "--since", "1h", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == (
        "would retry 3 jobs (4 matched; skipped (not failed or cancelled): 1 queued)"
    )
    assert all(client.get(job_id).status == "failed" for job_id in ids)
    real = callboard(server, "retry", "--company", company, "--status", "failed", "--json")
    assert real.returncode == 0, real.stderr
    report = json.loads(real.stdout)
    assert (report["matched"], report["applied"], report["dryRun"]) == (3, 3, False)
    for job_id in ids:
        wait_for(lambda j=job_id: client.get(j).attempt == 2, what="a second attempt")
    assert client.get(queued).status == "queued"


def test_cancel_by_filter(server: ServeProcess, client: Client, company: str):
    sleeping = [client.submit(company, "demo.sleep", {"seconds": 30}).job_id for _ in range(2)]
    later = client.submit(company, "noop", delay=3600).job_id
    result = callboard(server, "cancel", "--company", company, "--type", "demo.sleep")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cancelled 2 jobs (2 matched")
    for job_id in sleeping:
        wait_for(lambda j=job_id: client.get(j).status == "cancelled", what="cancelled")
    assert client.get(later).status == "queued"


def test_bulk_needs_a_filter_or_all(server: ServeProcess, client: Client, company: str):
    [job] = failed(client, company, 1)
    bare = callboard(server, "retry")
    assert bare.returncode == 2 and "--all" in bare.stderr
    mixed = callboard(server, "retry", job, "--status", "failed")
    assert mixed.returncode == 2 and "not both" in mixed.stderr
    everything = callboard(server, "cancel", "--all", "--dry-run", "--json")
    assert everything.returncode == 0 and json.loads(everything.stdout)["dryRun"] is True
    assert client.get(job).status == "failed"


def test_prune(server: ServeProcess, client: Client, company: str):
    ids = failed(client, company, 2)
    dry = callboard(server, "prune", "--older-than", "0", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["matched"] >= 2
    assert all(client.get(job_id).status == "failed" for job_id in ids)
    young = callboard(server, "prune", "--older-than", "1h")
    assert young.returncode == 0 and young.stdout.startswith("deleted 0 finished jobs")
    real = callboard(server, "prune", "--older-than", "0")
    assert real.returncode == 0 and real.stdout.startswith("deleted ")
    assert listed(callboard(server, "jobs", "--company", company, "--json")) == []
    missing = callboard(server, "prune")
    assert missing.returncode == 2 and "--older-than" in missing.stderr
    bad = callboard(server, "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "soon" in bad.stderr
