from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tui_server import Server

from callboard.client import Client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api(server: Server) -> Iterator[Client]:
    """A sync client for setting the scene (it runs outside the asyncio loop's tasks,
    blocking briefly, which is fine for a few calls)."""
    with Client(server.url, server.token) as client:
        client.create_company("acme")
        yield client
