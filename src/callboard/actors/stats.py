"""Publishes a `runtime.stats` event on the operator feed every `interval` seconds:
job counts by status and each company's running and queued jobs from the store,
plus what `snapshot()` says about this node.
It skips the store query while nobody is subscribed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ..errors import StoreUnavailable
from ..jobs import NodeEvent
from .ledger import Ledger

log = logging.getLogger("callboard.stats")


class StatsReporter:
    name = "stats"

    def __init__(
        self,
        ledger: Ledger,
        snapshot: Callable[[float], Mapping[str, Any]],
        interval: float = 1.0,
    ) -> None:
        self._ledger = ledger
        self._snapshot = snapshot
        self._interval = interval

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        broker = self._ledger.broker
        while True:
            await trio.sleep(self._interval)
            if broker.statistics().subscribers == 0:
                continue
            try:
                counts = await self._ledger.store.count_by_status()
                loads = await self._ledger.store.count_by_company()
            except StoreUnavailable:
                log.debug("no runtime.stats this second: store unavailable", exc_info=True)
                continue
            data = {
                "counts": {str(status): n for status, n in counts.items()},
                # Every node's running and queued jobs by company id (fair share).
                "companies": {c: {"running": r, "queued": q} for c, (r, q) in loads.items()},
                **self._snapshot(self._interval),
            }
            broker.publish(NodeEvent("runtime.stats", data))
