"""`AsyncClient.events(on_state=...)`: the connection reports the dashboard shows."""

from __future__ import annotations

import pytest
import trio
from serve_process import serve

from callboard.client import AsyncClient, StreamState, Unauthorized

pytestmark = pytest.mark.trio


async def test_on_state_reports_connected_then_reconnecting(tmp_path) -> None:
    states: list[StreamState] = []
    connected, dropped = trio.Event(), trio.Event()

    def on_state(state: StreamState) -> None:
        states.append(state)
        (connected if state.state == "connected" else dropped).set()

    async def drain(events) -> None:
        async for _ in events:
            pass

    with serve(tmp_path) as server:
        async with AsyncClient(server.url, server.token) as client:
            with trio.fail_after(20):
                async with (
                    client.events(last_event_id=0, reconnect_for=None, on_state=on_state) as events,
                    trio.open_nursery() as nursery,
                ):
                    nursery.start_soon(drain, events)
                    await connected.wait()
                    server.proc.terminate()  # the server ends its streams and goes away
                    await dropped.wait()
                    nursery.cancel_scope.cancel()
    assert [s.state for s in states] == ["connected", "reconnecting"]
    assert states[0].last_event_id == 0
    assert states[1].retry_in is not None and states[1].retry_in >= 0
    assert states[1].reason


async def test_stats_and_a_bad_token(tmp_path) -> None:
    with serve(tmp_path) as server:
        async with AsyncClient(server.url, server.token) as client:
            stats = await client.stats()
            assert set(stats["counts"]) >= {"queued", "running", "done"}
            assert isinstance(stats["workers"], list)
        states: list[StreamState] = []
        async with AsyncClient(server.url, "wrong") as client:
            with pytest.raises(Unauthorized):
                async with client.events(on_state=states.append) as events:
                    async for _ in events:
                        pass
        assert states == []
