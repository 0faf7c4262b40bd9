"""Pins the public API: a change here is a change for every user."""

from __future__ import annotations

import inspect

import pytest

import callboard


def test_exported_names():
    assert sorted(callboard.__all__) == [
        "Asset",
        "AssetNotFound",
        "AssetTooLarge",
        "Board",
        "CallboardError",
        "Company",
        "CompanyExists",
        "CompanyNotFound",
        "Conflict",
        "InvalidRequest",
        "InvalidTransition",
        "Job",
        "JobContext",
        "JobEvent",
        "JobNotFound",
        "JobSpec",
        "JobStatus",
        "Lagged",
        "NotFound",
        "Page",
        "Progress",
        "ReservedJobType",
        "RunningBoard",
        "ShuttingDown",
        "StoreInUse",
        "StoreUnavailable",
        "SupervisorEscalation",
        "TERMINAL",
        "UnknownJobType",
    ]
    for name in callboard.__all__:
        assert getattr(callboard, name) is not None


def params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_board_signature():
    assert params(callboard.Board)[:3] == ["database_url", "storage_dir", "workers"]
    assert params(callboard.Board.handler) == ["job_type", "timeout", "max_attempts", "concurrency"]


def test_running_board_methods():
    rb = callboard.RunningBoard
    assert params(rb.submit) == [
        "company_id",
        "job_type",
        "input",
        "source_task_id",
        "priority",
        "delay",
        "max_attempts",
        "timeout",
        "idempotency_key",
    ]
    assert params(rb.submit_many) == ["company_id", "specs"]
    assert params(rb.wait) == ["job_id", "timeout"]
    assert params(rb.list)[:4] == ["company_id", "status", "limit", "cursor"]
    assert params(rb.subscribe)[:2] == ["company_id", "after_event_id"]
    for name in ["create_company", "get", "cancel", "retry"]:
        assert inspect.iscoroutinefunction(getattr(rb, name)), name


def test_statuses_and_terminal_set():
    assert [s.value for s in callboard.JobStatus] == [
        "queued",
        "running",
        "done",
        "failed",
        "cancelled",
    ]
    assert {s.value for s in callboard.TERMINAL} == {"done", "failed", "cancelled"}


def test_job_context_surface():
    ctx_attrs = {
        "job_id",
        "company_id",
        "job_type",
        "input",
        "attempt",
        "source_task_id",
        "progress",
        "save_asset",
        "open_asset",
        "read_asset",
    }
    assert ctx_attrs <= set(dir(callboard.JobContext))


def test_the_testing_module_re_exports_the_memory_store():
    from callboard.store.memory import MemoryStore
    from callboard.testing import MemoryStore as ForUsers

    assert ForUsers is MemoryStore


def test_names_resolve_lazily_and_unknown_ones_fail():
    assert set(callboard.__all__) <= set(dir(callboard))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        callboard.Nope  # noqa: B018
