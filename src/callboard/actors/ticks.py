"""When a schedule's ticks fall: cron expressions (cronsim) in an IANA timezone
(zoneinfo), or a fixed interval in seconds.

Every time here is an aware UTC datetime; a cron expression is read on the wall clock
of its timezone, so daylight-saving changes behave as cron's do (cronsim follows
Debian's cron): a tick in the hour the clock skips (02:30 on the spring-forward day in
Europe/Paris) runs once, at the first minute after the gap (03:00); a tick in the hour
the clock repeats (02:30 on the fall-back day) runs once, the first time. An interval
counts real seconds and ignores the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import InvalidRequest, InvalidSchedule
from ..jobs import MAX_CRON, MAX_SECONDS, MIN_EVERY

__all__ = [
    "check_cron",
    "check_every",
    "check_timezone",
    "first_tick",
    "latest_tick",
    "next_tick",
]

#: How far back a late cron schedule looks for its latest missed tick: a schedule of
#: one tick a minute that missed a month would otherwise step through 43,000 ticks.
_LOOKBACK = timedelta(days=8)


def check_timezone(name: object) -> str:
    """An IANA timezone name the system knows; InvalidSchedule otherwise."""
    if not isinstance(name, str) or not name or len(name) > 100 or "\0" in name:
        raise InvalidSchedule("timezone must be an IANA timezone name such as Europe/Paris")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(
            f"unknown timezone {name!r}; use an IANA name such as Europe/Paris or UTC"
        ) from None
    return name


def check_cron(expression: object) -> str:
    """A five-field cron expression (minute hour day-of-month month day-of-week), with
    single blanks between fields; InvalidSchedule names what is wrong."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidSchedule("cron must be a cron expression such as '30 2 * * *'")
    if len(expression) > MAX_CRON:
        raise InvalidSchedule(f"cron must be at most {MAX_CRON} characters")
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"cron must have 5 fields (minute hour day-of-month month day-of-week), "
            f"not {len(fields)}: {expression!r}"
        )
    normal = " ".join(fields)
    try:
        next(CronSim(normal, datetime(2000, 1, 1, tzinfo=UTC)))
    except CronSimError as exc:
        raise InvalidSchedule(f"invalid cron expression {expression!r}: {exc}") from None
    except StopIteration:
        raise InvalidSchedule(f"cron expression {expression!r} never matches") from None
    return normal


def check_every(every: object) -> float:
    """An interval in seconds, from MIN_EVERY to MAX_SECONDS; InvalidRequest otherwise."""
    if (
        isinstance(every, bool)
        or not isinstance(every, int | float)
        or not MIN_EVERY <= every <= MAX_SECONDS  # NaN fails both comparisons
    ):
        raise InvalidRequest(
            f"every must be a number of seconds from {MIN_EVERY} to {MAX_SECONDS} (ten years)"
        )
    return float(every)


def _cron_after(expression: str, timezone: str, after: datetime) -> datetime:
    local = after.astimezone(ZoneInfo(timezone))
    return next(CronSim(expression, local)).astimezone(UTC)


def next_tick(cron: str | None, every: float | None, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after `after`, counting an interval from `after`."""
    if cron is not None:
        return _cron_after(cron, timezone, after)
    assert every is not None
    return after + timedelta(seconds=every)


def first_tick(cron: str | None, every: float | None, timezone: str, now: datetime) -> datetime:
    """The next tick of a schedule made (or edited, or resumed) at `now`: an interval
    counts from `now`."""
    return next_tick(cron, every, timezone, now)


def latest_tick(
    cron: str | None, every: float | None, timezone: str, due: datetime, now: datetime
) -> tuple[datetime, datetime]:
    """For a schedule whose tick `due` has come (`due <= now`): its latest tick at or
    before `now`, and the first tick after `now`."""
    if every is not None:
        step = timedelta(seconds=every)
        latest = due + step * ((now - due) // step)
        return latest, latest + step
    assert cron is not None
    latest = due
    start = max(due, now - _LOOKBACK)
    tick = _cron_after(cron, timezone, start)
    while tick <= now:
        latest = tick
        tick = _cron_after(cron, timezone, tick)
    return latest, tick
