"""Node presence: every running node keeps a row in the store, and learns from the
others' rows who shares its queue.

- The node announces itself (`JobStore.announce_node`) when it starts, before its
  reaper, dispatcher and web server do, so a node sees at once the nodes that started
  before it; then every `BEAT_SECONDS`. A node not seen for `LIVE_BEATS` beats is
  gone; a clean stop deletes its row, and any node's announcement deletes the rows of
  nodes not seen for an hour (a killed node never deletes its own).
- On PostgreSQL the rows also decide whether a commit notifies the other nodes at
  all: only while two or more were seen in the last 15 s (`callboard_append_events`),
  which is `LIVE_BEATS` beats.
- Nodes that share a queue serve each other's assets only from one storage. On a
  shared store (not the embedded one) this node warns, once per other node when it
  first sees it, when it keeps its assets on its own disk (file://) and there are
  other nodes (not counting those on this machine with the same directory: `serve
  --processes`), and when another node keeps them somewhere else than it does. The
  warnings that apply now are in `warnings`, which `/readyz` shows; they never make
  the node unready.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import trio

from ..config import local_path, parse_s3_url
from ..errors import StoreUnavailable
from ..storage.location import is_shared
from ..store.base import JobStore, NodeInfo

log = logging.getLogger("callboard.presence")

#: How often a node refreshes its row.
BEAT_SECONDS = 5.0
#: Beats a node may miss before the others think it gone (15 s: the window
#: callboard_append_events counts nodes in on PostgreSQL).
LIVE_BEATS = 3
LIVE_WINDOW = timedelta(seconds=BEAT_SECONDS * LIVE_BEATS)
#: Rows of nodes not seen for this long are deleted.
FORGET_AFTER = timedelta(hours=1)
#: How long a stopping node tries to delete its row (else it ages out).
FORGET_TIMEOUT = 2.0
#: Nodes a warning names; it counts the rest.
_NAMED = 3


def _place(url: str) -> str:
    """A storage URL in one spelling, so equal places compare equal."""
    try:
        if url.startswith("s3://"):
            return parse_s3_url(url).url
        if url.startswith("file://"):
            return local_path(url).as_uri()
    except ValueError:
        pass
    return url


def _nodes(count: int) -> str:
    return f"{count} other node" + ("s" if count != 1 else "")


def _named(nodes: Sequence[NodeInfo], where: bool = False) -> str:
    names = [f"{n.id} ({n.storage_url})" if where else n.id for n in nodes[:_NAMED]]
    if len(nodes) > _NAMED:
        names.append(f"{len(nodes) - _NAMED} more")
    return ", ".join(names)


class Presence:
    """Announces this node every `interval` seconds and keeps what it saw of the
    others (`live`, this node included) and the `warnings` that follow from it."""

    name = "presence"

    def __init__(
        self,
        store: JobStore,
        now: Callable[[], datetime],
        node: NodeInfo,
        *,
        shared_store: bool,
        interval: float = BEAT_SECONDS,
    ) -> None:
        self._store = store
        self._now = now
        self.node = node
        self._shared_store = shared_store
        self._interval = interval
        #: The live nodes as of the last beat that reached the store.
        self.live: tuple[NodeInfo, ...] = (node,)
        #: What applies as of that beat, one line each.
        self.warnings: tuple[str, ...] = ()
        # Ids of the nodes each warning was logged for. A node's id is new at every
        # start, so these grow by one per start of another node: a few bytes.
        self._warned_local: set[str] = set()
        self._warned_elsewhere: set[str] = set()

    @property
    def live_window(self) -> timedelta:
        return timedelta(seconds=self._interval * LIVE_BEATS)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.beat()
            task_status.started()
            while True:
                await trio.sleep(self._interval)
                await self.beat()
        finally:
            with trio.move_on_after(FORGET_TIMEOUT, shield=True):
                try:
                    await self._store.forget_node(self.node.id)
                except StoreUnavailable as exc:
                    log.debug("cannot delete this node's row (it ages out): %s", exc)

    async def beat(self) -> None:
        """Announce this node, read who else is live, and warn about what is new."""
        now = self._now()
        try:
            await self._store.announce_node(self.node, now, now - FORGET_AFTER)
            live = await self._store.live_nodes(now - self.live_window)
        except StoreUnavailable as exc:
            # Presence is advice: the others see this node again at its next beat.
            log.debug("cannot refresh this node's presence: %s", exc)
            return
        self.live = tuple(live)
        self._review([n for n in live if n.id != self.node.id])

    def _review(self, others: list[NodeInfo]) -> None:
        warnings: list[str] = []
        mine = self.node.storage_url
        # Nodes on this machine with the same directory share it (serve --processes).
        apart = [
            n for n in others if n.host != self.node.host or _place(n.storage_url) != _place(mine)
        ]
        if self._shared_store and apart and not is_shared(mine):
            text = (
                f"{_nodes(len(apart))} share{'s' if len(apart) == 1 else ''} this node's "
                f"database, and this node keeps its assets in {mine}: assets written on the "
                "other nodes cannot be served here, nor this node's there, unless that path "
                "is one storage shared by all of them; give every node the same "
                "--storage-url s3://bucket/prefix"
            )
            warnings.append(text)
            self._warn(text, apart, self._warned_local)
        # Two file:// URLs are the case above: they may still be one shared mount.
        elsewhere = [
            n
            for n in others
            if _place(n.storage_url) != _place(mine)
            and (is_shared(n.storage_url) or is_shared(mine))
        ]
        if self._shared_store and elsewhere:
            text = (
                f"{_nodes(len(elsewhere))} keep{'s' if len(elsewhere) == 1 else ''} assets "
                f"elsewhere than this node ({mine}): {_named(elsewhere, where=True)}; no node "
                "can serve an asset another node wrote to another storage: give every node "
                "the same --storage-url s3://bucket/prefix"
            )
            warnings.append(text)
            self._warn(text, elsewhere, self._warned_elsewhere)
        self.warnings = tuple(warnings)

    @staticmethod
    def _warn(text: str, nodes: list[NodeInfo], warned: set[str]) -> None:
        new = [n for n in nodes if n.id not in warned]
        if new:
            log.warning("%s (first seen: %s)", text, _named(new))
            warned.update(n.id for n in new)
