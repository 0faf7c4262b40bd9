"""The stored time format: `iso()` text is fixed width, so text order is time order
(the SQLite store compares times as strings)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from callboard.jobs import iso, parse_iso


def test_iso_is_fixed_width_utc_and_round_trips() -> None:
    rng = random.Random(3)
    times = [datetime(26, 4, 8, 20, 15, 19, 97805, tzinfo=UTC)]
    for _ in range(500):
        t = datetime(rng.randint(1, 9998), 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randint(0, 10**7), microseconds=rng.randint(0, 999_999)
        )
        times.append(t.astimezone(timezone(timedelta(hours=rng.randint(-12, 12)))))
    texts = [iso(t) for t in times]
    assert iso(times[0]) == "0026-04-08T20:15:19.097805Z"
    assert {len(text) for text in texts} == {27}
    assert all(text.endswith("Z") for text in texts)
    assert [parse_iso(text) for text in texts] == times
    assert sorted(texts) == [iso(t) for t in sorted(times)]
    assert iso(datetime(2030, 1, 1, tzinfo=UTC)) == "2030-01-01T00:00:00.000000Z"
    assert iso(None) is None
