"""What `/readyz` answers: whether the node can take work (the runtime accepts, the
store answers, asset storage can be written), plus what an operator should know
without it making the node unready (`warnings`) and how many nodes share its store.

Load balancers poll readiness, often, on every node: the storage check (a request to
the bucket on s3://) is bounded by `STORAGE_TIMEOUT` and its answer kept for
`STORAGE_CACHE_SECONDS`, and concurrent probes share one check.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..errors import StorageUnavailable, StoreUnavailable
from ..running_board import RunningBoard

log = logging.getLogger("callboard.web")

STORAGE_TIMEOUT = 2.0
STORAGE_CACHE_SECONDS = 5.0


class StorageCheck:
    """`check()` (`AssetStorage.check`) at most once per `cache_seconds`, each bounded
    by `timeout`; a change of its answer is logged once."""

    def __init__(
        self,
        check: Callable[[], Awaitable[None]],
        *,
        timeout: float = STORAGE_TIMEOUT,
        cache_seconds: float = STORAGE_CACHE_SECONDS,
    ) -> None:
        self._check = check
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._lock = trio.Lock()
        self._checked_at = -math.inf
        self._ok = True

    async def ok(self) -> bool:
        async with self._lock:
            if trio.current_time() - self._checked_at < self._cache_seconds:
                return self._ok
            problem = None
            with trio.move_on_after(self._timeout) as waited:
                try:
                    await self._check()
                except StorageUnavailable as exc:
                    problem = str(exc)
            if waited.cancelled_caught:
                problem = f"asset storage did not answer within {self._timeout:g} s"
            self._checked_at = trio.current_time()
            if problem is not None and self._ok:
                log.warning("%s: /readyz answers 503 until it works again", problem)
            elif problem is None and not self._ok:
                log.warning("asset storage works again")
            self._ok = problem is None
            return self._ok


async def readiness(rt: RunningBoard, storage: StorageCheck) -> tuple[dict[str, Any], int]:
    """The body and status of `/readyz`: 200 when every check passes, else 503."""
    checks = {"runtime": rt.accepting and not rt.draining.is_set(), "store": True}
    try:
        await rt.store.ping()
    except StoreUnavailable:
        checks["store"] = False
    checks["storage"] = await storage.ok()
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": checks,
        "nodes": rt.node_count,
        "warnings": rt.warnings,
    }
    return body, 200 if ready else 503
