"""The runtime's notion of "now": wall-clock datetimes derived from trio's clock.

One anchor is taken when the runtime starts; after that, `now()` is the anchor plus
however far trio's clock has moved. Timers (`trio.sleep_until`) and the timestamps
written to the store (run_at, leases) then agree exactly, and under trio's
`MockClock` (virtual time in tests) the store sees virtual time too. A wall-clock
step while a node runs (a VM resume, a manual change) is only picked up on restart,
which is the price of never seeing time run backwards.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio


class TrioWallClock:
    def __init__(self, anchor: datetime | None = None) -> None:
        self._anchor_wall = anchor or datetime.now(UTC)
        self._anchor_trio = trio.current_time()

    def now(self) -> datetime:
        return self._anchor_wall + timedelta(seconds=trio.current_time() - self._anchor_trio)

    def trio_deadline(self, at: datetime) -> float:
        """The trio clock reading at which wall time `at` arrives."""
        return self._anchor_trio + (at - self._anchor_wall).total_seconds()
