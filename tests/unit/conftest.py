"""Unit-test fixtures: a Board on the in-memory store, for virtual time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from callboard import Board
from callboard.actors.worker import Backoff
from callboard.store.memory import MemoryStore


@pytest.fixture
def make_board() -> Callable[..., Board]:
    def make(**kwargs: Any) -> Board:
        kwargs.setdefault("store", MemoryStore())
        kwargs.setdefault("workers", 2)
        kwargs.setdefault("lease_seconds", 30.0)
        kwargs.setdefault("retry_backoff", Backoff(base=1.0, maximum=60.0))
        # In-process nodes share the test runner: a stall (a loaded machine) must not
        # end it, and with a 1 s lease a quarter second past a job's stop deadline did,
        # taking the whole run down with exit 70. tests/faults/test_blocked_loop.py
        # tests the exit with real processes.
        kwargs.setdefault("loop_stall_exit", False)
        # The tests use the demo types as ready-made handlers (a production node has
        # them off: tests/unit/test_job_types.py).
        kwargs.setdefault("demo_types", True)
        return Board(**kwargs)

    return make
