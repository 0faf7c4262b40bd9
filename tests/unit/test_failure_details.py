"""What a failed attempt keeps: a readable message, the exception's type and its
traceback (bounded, the tail), through the whole actor tree in virtual time."""

from __future__ import annotations

import pytest
import trio
from boardkit import all_events, running_with_company

from callboard import JobContext, JobStatus
from callboard.actors.failure import bounded_traceback, describe_error, type_name
from callboard.jobs import (
    INVALID_RESULT_TYPE,
    MAX_TRACEBACK_BYTES,
    TIMEOUT_TYPE,
    EventType,
)


class QuotaExceeded(Exception):
    """A handler's own exception: its type is named with its module."""


@pytest.mark.trio
async def test_a_bare_key_error_reads_with_its_type_and_keeps_its_traceback(
    make_board, autojump_clock
):
    board = make_board()

    @board.handler("haiku", max_attempts=2)
    async def haiku(ctx: JobContext) -> None:
        ctx.input["topic"]  # the bug: no topic was given

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "haiku", {})
        failed = await rt.wait(job.id, timeout=60)
        events = await all_events(rt, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempt == 2
    assert failed.error_message == "KeyError: 'topic'"
    assert failed.error_type == "KeyError"
    tb = failed.error_traceback
    assert tb.startswith("Traceback (most recent call last):\n")
    assert 'ctx.input["topic"]' in tb and "in haiku" in tb
    assert tb.endswith("KeyError: 'topic'\n")
    # Each attempt's failure stays in the history: the retrying event and the failed one.
    endings = [e for e in events if e.type in (EventType.RETRYING, EventType.FAILED)]
    assert [e.type for e in endings] == [EventType.RETRYING, EventType.FAILED]
    for event in endings:
        assert event.job.error_type == "KeyError" and "in haiku" in event.job.error_traceback
        assert event.job.to_dict()["errorType"] == "KeyError"


@pytest.mark.trio
async def test_a_handlers_own_exception_is_named_with_its_module(make_board, autojump_clock):
    board = make_board()

    @board.handler("quota")
    async def quota(ctx: JobContext) -> None:
        raise QuotaExceeded("over the monthly quota")

    async with running_with_company(board) as (rt, company):
        failed = await rt.wait((await rt.submit(company, "quota")).id, timeout=10)
    assert failed.error_message == "over the monthly quota"  # a message of its own: as is
    assert failed.error_type == f"{__name__}.QuotaExceeded"
    assert "." in failed.error_type and "QuotaExceeded: over the monthly quota" in (
        failed.error_traceback
    )


@pytest.mark.trio
async def test_callboards_own_endings_have_a_type_and_no_traceback(make_board, autojump_clock):
    board = make_board()

    @board.handler("slow", timeout=5)
    async def slow(ctx: JobContext) -> None:
        await trio.sleep(60)

    @board.handler("odd")
    async def odd(ctx: JobContext) -> object:
        return {1, 2}

    async with running_with_company(board) as (rt, company):
        timed_out = await rt.wait((await rt.submit(company, "slow")).id, timeout=30)
        refused = await rt.wait((await rt.submit(company, "odd")).id, timeout=30)
        sleeping = await rt.submit(company, "demo.sleep", {"seconds": 30})
        await trio.sleep(1)
        await rt.cancel(sleeping.id)
        cancelled = await rt.wait(sleeping.id, timeout=30)
    assert timed_out.error_message == "timed out after 5 seconds"
    assert (timed_out.error_type, timed_out.error_traceback) == (TIMEOUT_TYPE, None)
    assert refused.error_message.startswith("the result is not JSON")
    assert (refused.error_type, refused.error_traceback) == (INVALID_RESULT_TYPE, None)
    assert cancelled.status is JobStatus.CANCELLED
    assert (cancelled.error_type, cancelled.error_traceback) == (None, None)


@pytest.mark.trio
async def test_a_long_traceback_keeps_its_tail(make_board, autojump_clock):
    board = make_board()

    @board.handler("wordy")
    async def wordy(ctx: JobContext) -> None:
        raise ValueError("é" * 20_000 + " the end")

    async with running_with_company(board) as (rt, company):
        failed = await rt.wait((await rt.submit(company, "wordy")).id, timeout=10)
    tb = failed.error_traceback
    assert len(tb.encode()) <= MAX_TRACEBACK_BYTES
    assert tb.startswith("[... ") and "bytes cut" in tb.splitlines()[0]
    assert tb.endswith("é the end\n")


def test_messages_of_bare_exceptions_name_their_type():
    assert describe_error(KeyError("topic")) == "KeyError: 'topic'"
    assert describe_error(IndexError(3)) == "IndexError: 3"
    assert describe_error(ValueError("bad input")) == "bad input"
    assert describe_error(RuntimeError()) == "RuntimeError"
    assert describe_error(OSError(2, "No such file")) == "[Errno 2] No such file"
    group = ExceptionGroup("two", [KeyError("a"), ValueError("b")])
    assert describe_error(group) == "KeyError: 'a'; b"


def test_type_names():
    assert type_name(KeyError()) == "KeyError"
    assert type_name(QuotaExceeded()) == f"{__name__}.QuotaExceeded"
    assert type_name(trio.TooSlowError()) == "trio.TooSlowError"


def test_bounded_traceback_cuts_at_a_character_and_a_line():
    short = "Traceback\nValueError: x\n"
    assert bounded_traceback(short) == short
    text = "".join(f"line {i} ü\n" for i in range(5000))
    cut = bounded_traceback(text, limit=1000)
    assert len(cut.encode()) <= 1000
    first, rest = cut.split("\n", 1)
    assert first.startswith("[... ") and first.endswith("bytes cut]")
    assert text.endswith(rest) and rest.startswith("line ")
    assert bounded_traceback("a\x00b\ud800") == "a\ufffdb\ufffd"
