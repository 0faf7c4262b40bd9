from __future__ import annotations

import pytest

from callboard.store.base import JobStore

# Every JobStore implementation the contract suite runs against. A new store adds
# one name here and one branch in `_make_store`.
STORE_KINDS = ["memory", "sqlite"]


def _make_store(kind: str, tmp_path) -> JobStore:
    if kind == "memory":
        from callboard.testing import MemoryStore

        return MemoryStore()
    if kind == "sqlite":
        from callboard.store.sqlite import SqliteStore

        return SqliteStore(tmp_path / "callboard.db")
    raise AssertionError(f"unknown store kind {kind!r}")


@pytest.fixture(params=STORE_KINDS)
async def store(request, tmp_path):
    """An opened store of each kind; closed after the test."""
    s = _make_store(request.param, tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()
