"""How a job reads in the dashboard, without a running app: the error column and the
detail's error (with its type and traceback when the failure has them), delayed
jobs' countdown, sort values, and the multi-status filter."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rich.console import Console, Group

from callboard.client import Job
from callboard.jobs import JobStatus, Progress
from callboard.tui import cells
from callboard.tui.model import JobFilter
from callboard.tui.screens import _error, _result

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def job(status: str = "failed", **changes: object) -> Job:
    base = Job(
        id="00000001-0000-4000-8000-000000000000",
        company_id="c1",
        job_type="render",
        status=JobStatus(status),
        priority=0,
        input={},
        progress=Progress(),
        attempt=1,
        max_attempts=1,
        timeout_seconds=None,
        run_at=NOW,
        result_asset_id=None,
        error_message="disk full",
        source_task_id=None,
        idempotency_key=None,
        created_at=NOW,
        started_at=None,
        finished_at=None,
        updated_at=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def detailed(base: Job, error_type: str, traceback: str) -> Job:
    return replace(base, error_type=error_type, error_traceback=traceback)


def plain(renderable: object) -> str:
    console = Console(width=100, record=True, file=None, color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def test_error_column_shows_the_message_and_the_type_when_known() -> None:
    assert cells.error_text(job()).plain == "disk full"
    typed = detailed(job(), "OSError", "Traceback (most recent call last):\n  ...")
    assert cells.error_text(typed).plain == "OSError: disk full"
    # A retried job (queued again) shows its last try's error; done and cancelled none.
    assert cells.error_text(job("queued")).plain == "last try: disk full"
    assert cells.error_text(job("cancelled", error_message="cancelled")).plain == ""
    assert cells.error_text(job("done", error_message=None)).plain == ""
    assert cells.error_text(job(error_message="a\n  b")).plain == "a b"


def test_detail_error_shows_type_and_traceback_when_present() -> None:
    assert plain(Group(*_error(job()))).strip() == "disk full"
    typed = detailed(job(), "OSError", 'Traceback (most recent call last):\n  File "x.py"')
    shown = plain(Group(*_error(typed)))
    assert "OSError: disk full" in shown and 'File "x.py"' in shown
    assert plain(Group(*_error(job("done", error_message=None)))).strip() == "none"


def test_detail_result_is_the_json_the_handler_returned() -> None:
    shown = plain(_result(job("done", result={"pages": [1, 2], "title": "é"})))
    assert '"pages"' in shown and '"é"' in shown
    assert plain(_result(job("running"))).strip() == "none yet"
    assert plain(_result(job("done"))).strip() == "none"
    assert plain(_result(job("done", result=0))).strip() == "0"


def test_delayed_job_counts_down_to_its_run() -> None:
    later = job("queued", error_message=None, run_at=NOW + timedelta(minutes=4, seconds=5))
    assert cells.delayed(later, NOW)
    text = cells.waiting_text(later, NOW).plain
    local = later.run_at.astimezone().strftime("%H:%M:%S")
    assert text == f"⏲ in 4m05s ({local})"
    assert not cells.delayed(later, NOW + timedelta(minutes=5))
    assert not cells.delayed(job("running", run_at=NOW + timedelta(minutes=4)), NOW)


def test_sort_values_order_as_the_operator_expects() -> None:
    old = job("done", created_at=NOW - timedelta(hours=1))
    new = job("queued", created_at=NOW)
    running = job("running", created_at=NOW - timedelta(minutes=1))
    by = sorted([old, new, running], key=lambda j: cells.sort_value(j, "age", "acme", NOW))
    assert by == [new, running, old]
    by = sorted([old, new, running], key=lambda j: cells.sort_value(j, "status", "acme", NOW))
    assert [str(j.status) for j in by] == ["queued", "running", "done"]
    assert set(cells.SORTABLE) <= {key for key, _, _ in cells.COLUMNS}


def test_status_filter_takes_several_statuses() -> None:
    both = JobFilter(frozenset({"failed", "done"}))
    assert both.matches(job("failed")) and both.matches(job("done"))
    assert not both.matches(job("running"))
    assert both.describe() == "status=done,failed"
    assert JobFilter(status="failed").statuses == {"failed"}
    assert JobFilter(frozenset()).status is None and not JobFilter(frozenset()).active


def test_help_lists_every_key_of_the_dashboard() -> None:
    from callboard.tui.dialogs import KEYS
    from callboard.tui.screens import DashboardScreen

    names = {"slash": "/", "escape": "Esc", "enter": "Enter", "question_mark": "?"}
    listed = {part for key, _ in KEYS for part in key.replace("/", " / ").split()}
    for binding in DashboardScreen.BINDINGS:
        key = binding.key  # type: ignore[union-attr]
        assert names.get(key, key) in listed, f"{key} is not in the help"
