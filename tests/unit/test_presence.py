"""Node presence in virtual time: nodes announce themselves, see each other, age out,
and warn once per other node when they cannot serve each other's assets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import trio

from callboard.actors.presence import BEAT_SECONDS, LIVE_BEATS, Presence
from callboard.runtime.clock import TrioWallClock
from callboard.store.base import NodeInfo
from callboard.store.memory import MemoryStore

pytestmark = pytest.mark.trio

START = datetime(2030, 1, 1, tzinfo=UTC)
LOCAL = "file:///srv/callboard/assets"
BUCKET = "s3://bucket/assets"


def node(name: str, storage: str) -> NodeInfo:
    return NodeInfo(f"{name}:1:abcd", name, 1, START, storage, ("noop",))


@asynccontextmanager
async def opened(store: MemoryStore) -> AsyncIterator[TrioWallClock]:
    async with store.opened():
        yield TrioWallClock(START)


@asynccontextmanager
async def running(
    store: MemoryStore, clock: TrioWallClock, info: NodeInfo, *, shared: bool = True
) -> AsyncIterator[Presence]:
    presence = Presence(store, clock.now, info, shared_store=shared)
    async with trio.open_nursery() as nursery:
        await nursery.start(presence.run)
        yield presence
        nursery.cancel_scope.cancel()


async def rows(store: MemoryStore) -> list[NodeInfo]:
    """Every node row, live or not (the store reopened: its data survive a close)."""
    async with store.opened():
        return await store.live_nodes(START - timedelta(days=1))


async def next_beat() -> None:
    # Past it: at the very time of a beat, the test may run before the actor does.
    await trio.sleep(BEAT_SECONDS + 0.1)


def warning_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "callboard.presence" and r.levelno == logging.WARNING
    ]


async def test_a_node_on_local_storage_warns_once_per_other_node(caplog, autojump_clock):
    caplog.set_level(logging.DEBUG, "callboard.presence")
    store = MemoryStore()
    async with opened(store) as clock, running(store, clock, node("a", LOCAL)) as a:
        assert a.warnings == () and [n.id for n in a.live] == ["a:1:abcd"]
        assert warning_lines(caplog) == []

        async with running(store, clock, node("b", LOCAL)) as b:
            # b sees a at its first announcement, before it reports started.
            [line] = warning_lines(caplog)
            assert line.startswith("1 other node shares this node's database")
            assert f"keeps its assets in {LOCAL}" in line
            assert "assets written on the other nodes cannot be served here" in line
            assert "--storage-url s3://" in line and "(first seen: a:1:abcd)" in line
            assert b.warnings == (line.removesuffix(" (first seen: a:1:abcd)"),)
            # a sees b at its next beat, and says so once.
            await next_beat()
            assert len(warning_lines(caplog)) == 2
            assert warning_lines(caplog)[1].endswith("(first seen: b:1:abcd)")
            assert len(a.live) == len(b.live) == 2 and len(a.warnings) == 1

            await trio.sleep(10 * BEAT_SECONDS)
            assert len(warning_lines(caplog)) == 2  # nothing new, nothing said

            async with running(store, clock, node("c", LOCAL)):
                await next_beat()
                lines = warning_lines(caplog)[2:]
                # c warns of a and b; a and b each of c alone, counting both others.
                assert sorted(line.partition(" other")[0] for line in lines) == ["2", "2", "2"]
                assert sum(line.endswith("(first seen: c:1:abcd)") for line in lines) == 2
                assert len(b.live) == 3
        # b stopped and deleted its row: a no longer counts it, and warns of no one.
        await next_beat()
        assert [n.id for n in a.live] == ["a:1:abcd"] and a.warnings == ()
    assert len(warning_lines(caplog)) == 5
    assert await rows(store) == []  # every node deleted its row as it stopped


async def test_no_warning_on_the_embedded_store_or_on_one_shared_bucket(caplog, autojump_clock):
    store = MemoryStore()
    async with opened(store) as clock:
        # Not a shared store: other rows there (which the embedded one never has) are
        # no reason to warn.
        async with (
            running(store, clock, node("a", LOCAL), shared=False) as a,
            running(store, clock, node("b", LOCAL), shared=False),
        ):
            await next_beat()
            assert len(a.live) == 2 and a.warnings == ()
        # One bucket, however it is spelled.
        async with (
            running(store, clock, node("a", BUCKET)) as a,
            running(store, clock, node("b", "s3://bucket/assets/")) as b,
        ):
            await next_beat()
            assert len(a.live) == 2 and a.warnings == b.warnings == ()
    assert warning_lines(caplog) == []


async def test_processes_of_one_machine_on_one_directory_share_it(caplog, autojump_clock):
    """`serve --processes N`: N nodes, one host, one storage directory: nothing to
    say. A node of that host on another directory cannot serve their assets."""

    def process(pid: int, storage: str = LOCAL) -> NodeInfo:
        return NodeInfo(f"vm:{pid}:abcd", "vm", pid, START, storage)

    store = MemoryStore()
    async with (
        opened(store) as clock,
        running(store, clock, process(1)) as one,
        running(store, clock, process(2, LOCAL + "/")) as two,
    ):
        await next_beat()
        assert len(one.live) == 2 and one.warnings == two.warnings == ()
        async with running(store, clock, process(3, "file:///srv/other")) as three:
            await next_beat()
            assert three.warnings[0].startswith("2 other nodes share this node's database")
            assert one.warnings[0].startswith("1 other node shares this node's database")
    assert len(warning_lines(caplog)) == 3


@pytest.mark.parametrize(
    ("mine", "theirs", "warnings"),
    [
        (BUCKET, "s3://other-bucket/assets", 1),
        (BUCKET, "s3://bucket/elsewhere", 1),
        (BUCKET, LOCAL, 1),
        (LOCAL, BUCKET, 2),  # its own disk, and a bucket the other does not share
    ],
)
async def test_nodes_on_different_storage_warn(caplog, autojump_clock, mine, theirs, warnings):
    store = MemoryStore()
    async with (
        opened(store) as clock,
        running(store, clock, node("a", theirs)),
        running(store, clock, node("b", mine)) as b,
    ):
        assert len(b.warnings) == warnings
        elsewhere = b.warnings[-1]
        assert elsewhere.startswith(f"1 other node keeps assets elsewhere than this node ({mine})")
        assert f"a:1:abcd ({theirs})" in elsewhere
        assert "give every node the same --storage-url" in elsewhere
    assert len(warning_lines(caplog)) >= warnings


async def test_a_killed_node_ages_out_and_its_row_goes_after_an_hour(autojump_clock):
    store = MemoryStore()
    async with opened(store) as clock, running(store, clock, node("a", BUCKET)) as a:
        # A node that announced itself once and then died (nothing deleted its row).
        await store.announce_node(node("dead", BUCKET), clock.now(), clock.now())
        await next_beat()
        assert len(a.live) == 2
        await trio.sleep(BEAT_SECONDS * LIVE_BEATS)
        assert [n.id for n in a.live] == ["a:1:abcd"]
        ever = START - timedelta(days=1)
        assert len(await store.live_nodes(ever)) == 2  # not live, still there
        await trio.sleep(3600)
        assert [n.id for n in await store.live_nodes(ever)] == ["a:1:abcd"]


async def test_an_unreachable_store_leaves_the_last_view_and_the_actor_running(
    caplog, autojump_clock
):
    store = MemoryStore()
    async with (
        opened(store) as clock,
        running(store, clock, node("a", LOCAL)),
        running(store, clock, node("b", LOCAL)) as b,
    ):
        store.set_available(False)
        await trio.sleep(LIVE_BEATS * BEAT_SECONDS * 2)
        assert len(b.live) == 2 and len(b.warnings) == 1
        store.set_available(True)
        await next_beat()
        assert len(b.live) == 2
    assert len(warning_lines(caplog)) == 2


async def test_a_running_node_announces_itself_and_forgets_itself_at_the_end(
    make_board, autojump_clock
):
    store = MemoryStore()
    board = make_board(store=store, workers=1)
    async with board.running() as rt:
        [me] = await rt.live_nodes()
        assert me.id == rt.lease_owner
        assert me.storage_url == board.settings.storage_location
        assert "noop" in me.job_types
        assert rt.node_count == 1 and rt.warnings == []
    assert await rows(store) == []

    async with make_board(store=store, workers=0).running() as rt:
        [me] = await rt.live_nodes()
        assert me.job_types == ()  # a node without workers runs nothing
