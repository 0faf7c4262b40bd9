"""The storage check behind /readyz, in virtual time: one check at a time however many
probes come, its answer kept for a while, and a check that hangs given up on."""

from __future__ import annotations

import pytest
import trio

from callboard.errors import StorageUnavailable
from callboard.web.readiness import StorageCheck

pytestmark = pytest.mark.trio


class Bucket:
    """What `AssetStorage.check` would ask: answers after `delay`, or fails."""

    def __init__(self) -> None:
        self.asked = 0
        self.delay = 0.5
        self.failing = False

    async def check(self) -> None:
        self.asked += 1
        await trio.sleep(self.delay)
        if self.failing:
            raise StorageUnavailable("object storage s3://b: NoSuchBucket")


async def test_concurrent_probes_share_one_check_and_its_answer_is_kept(autojump_clock):
    bucket = Bucket()
    storage = StorageCheck(bucket.check, timeout=2.0, cache_seconds=5.0)
    answers: list[bool] = []

    async def probe() -> None:
        answers.append(await storage.ok())

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(probe)
    assert answers == [True] * 20 and bucket.asked == 1

    bucket.failing = True
    await trio.sleep(4.0)
    assert await storage.ok() is True and bucket.asked == 1  # still kept
    await trio.sleep(1.0)
    assert await storage.ok() is False and bucket.asked == 2
    bucket.failing = False
    await trio.sleep(5.0)
    assert await storage.ok() is True and bucket.asked == 3


async def test_a_check_that_hangs_is_given_up_on(autojump_clock):
    bucket = Bucket()
    bucket.delay = 3600
    storage = StorageCheck(bucket.check, timeout=2.0, cache_seconds=5.0)
    started = trio.current_time()
    assert await storage.ok() is False
    assert trio.current_time() - started == pytest.approx(2.0)
    assert await storage.ok() is False and bucket.asked == 1
