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
        return Board(**kwargs)

    return make
