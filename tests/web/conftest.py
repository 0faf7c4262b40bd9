"""A real callboard node with its Hypercorn server on a loopback port, in-process.

The helpers live in `webkit.py`; `start_server` and `Server` are re-exported here for
the tests that start their own node (CORS settings, stop/start on one data dir)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from webkit import Server, create_company, serving, start_server

__all__ = ["Server", "start_server"]


@pytest.fixture
def storage_url() -> str:
    """The node's asset storage: "" is the default (file:// under its data directory).
    A module overrides this fixture to run its tests on other storage (test_assets.py
    runs on S3 too)."""
    return ""


@pytest.fixture
async def server(tmp_path, storage_url) -> AsyncIterator[Server]:
    env = {"CALLBOARD_STORAGE_URL": storage_url} if storage_url else None
    async with serving(tmp_path, env) as s:
        yield s


@pytest.fixture
async def company(server: Server) -> dict[str, Any]:
    return await create_company(server, "acme")
