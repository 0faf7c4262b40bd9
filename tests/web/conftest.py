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
async def server(tmp_path) -> AsyncIterator[Server]:
    async with serving(tmp_path) as s:
        yield s


@pytest.fixture
async def company(server: Server) -> dict[str, Any]:
    return await create_company(server, "acme")
