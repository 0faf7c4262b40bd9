"""Job results: what a handler returns, checked (JSON, bounded), and where it shows up;
through the whole actor tree on the in-memory store, in virtual time."""

from __future__ import annotations

import json
from collections import OrderedDict
from enum import IntEnum

import pytest
import trio
from boardkit import all_events, running_with_company

from callboard import JobContext, JobStatus
from callboard.config import DEFAULT_RESULT_MAX_BYTES, SettingError, load_settings
from callboard.jobs import EventType, Job, encode_result

MiB = 1024 * 1024


# --- encode_result: the check itself -----------------------------------------------------


def test_a_json_value_is_written_compact_and_as_it_reads_back():
    assert encode_result(None, 10) is None
    assert encode_result({"b": [1, 2.5], "a": "é"}, 100) == '{"b":[1,2.5],"a":"é"}'
    assert encode_result((1, (2, 3)), 100) == "[1,[2,3]]"  # JSON has one kind of array

    class Level(IntEnum):
        HIGH = 3

    assert encode_result({"level": Level.HIGH}, 100) == '{"level":3}'
    assert encode_result(OrderedDict(z=1, a=2), 100) == '{"z":1,"a":2}'


def test_the_limit_counts_bytes_of_utf8():
    text = "é" * 10  # 20 bytes of UTF-8, 22 with its quotes
    assert encode_result(text, 22) == json.dumps(text, ensure_ascii=False)
    with pytest.raises(ValueError) as caught:
        encode_result(text, 21)
    assert str(caught.value) == (
        "the result is 22 bytes of JSON; results are at most 21 bytes: CALLBOARD_RESULT_MAX_BYTES"
    )


def test_the_size_message_reads_in_words_and_bytes():
    with pytest.raises(ValueError) as caught:
        encode_result("x" * 1_234_565, DEFAULT_RESULT_MAX_BYTES)
    assert str(caught.value) == (
        "the result is 1.2 MiB (1234567 bytes) of JSON; results are at most 1 MiB "
        "(1048576 bytes): CALLBOARD_RESULT_MAX_BYTES"
    )


class Thing:
    pass


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": {1, 2}}, "Object of type set is not JSON serializable (at result['x'])"),
        (
            {"a": {"b": b"raw"}},
            "Object of type bytes is not JSON serializable (at result['a']['b'])",
        ),
        ([Thing()], "Object of type Thing is not JSON serializable (at result[0])"),
        ({"x": [1, float("nan")]}, "nan is not a JSON number (at result['x'][1])"),
        ({"x": float("-inf")}, "-inf is not a JSON number (at result['x'])"),
        ({1: "one"}, "a key must be a string, not int 1 (at result)"),
        (
            {"k": [{"ok": 1}, {None: 2}]},
            "a key must be a string, not NoneType None (at result['k'][1])",
        ),
        ({"k": (1, {2.5: 3})}, "a key must be a string, not float 2.5 (at result['k'][1])"),
        ({"s": "a\ud800b"}, "a string holds a lone surrogate (at result['s'])"),
        ({"\udfff": 1}, "a string holds a lone surrogate (at result)"),
        (
            {"k" * 100: {1}},
            f"Object of type set is not JSON serializable (at result['{'k' * 36}...])",
        ),
    ],
)
def test_not_json_says_what_and_where(value, message):
    with pytest.raises(ValueError) as caught:
        encode_result(value, MiB)
    assert str(caught.value) == f"the result is not JSON: {message}"


def test_a_result_that_holds_itself_or_nests_too_deep_is_refused():
    loop: list[object] = [1]
    loop.append({"again": loop})
    with pytest.raises(ValueError) as caught:
        encode_result(loop, MiB)
    assert str(caught.value) == "the result is not JSON: it contains itself (at result[1]['again'])"
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError) as caught:
        encode_result(deep, 10**9)
    assert str(caught.value).startswith("the result is not JSON: it is nested too deeply")
    assert "\n" not in str(caught.value)


# --- the setting ---------------------------------------------------------------------------


def test_the_setting_defaults_to_one_mib_and_reads_its_variable():
    assert load_settings({}, {}).result_max_bytes == MiB == DEFAULT_RESULT_MAX_BYTES
    assert load_settings({}, {"CALLBOARD_RESULT_MAX_BYTES": "4096"}).result_max_bytes == 4096
    with pytest.raises(SettingError) as caught:
        load_settings({}, {"CALLBOARD_RESULT_MAX_BYTES": "0"})
    assert str(caught.value) == "CALLBOARD_RESULT_MAX_BYTES: must be at least 1, got 0"


# --- through the runtime -------------------------------------------------------------------

trio_test = pytest.mark.trio


@trio_test
async def test_what_a_handler_returns_is_the_jobs_result(make_board, autojump_clock):
    board = make_board()
    value = {"pages": 12, "title": "Résumé ✓", "parts": [{"n": 1}, {"n": 2.5}], "ok": True}

    @board.handler("summarise")
    async def summarise(ctx: JobContext) -> dict:
        await trio.sleep(1)
        return {**value, "input": dict(ctx.input)}

    @board.handler("quiet")
    async def quiet(ctx: JobContext) -> None:
        await trio.sleep(1)

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "summarise", {"doc": "a"})
        done = await rt.wait(job.id, timeout=10)
        assert done.status is JobStatus.DONE
        assert done.result == {**value, "input": {"doc": "a"}}
        assert (await rt.get(job.id)).result == done.result
        events = await all_events(rt, job.id)
        assert events[-1].type == EventType.DONE and events[-1].job.result == done.result
        assert all(e.job.result is None for e in events[:-1])
        assert done.to_dict()["result"] == done.result
        assert Job.from_dict(json.loads(json.dumps(done.to_dict()))) == done
        silent = await rt.wait((await rt.submit(company, "quiet")).id, timeout=10)
        assert silent.status is JobStatus.DONE and silent.result is None
        assert silent.to_dict()["result"] is None


@trio_test
async def test_a_result_too_big_or_not_json_fails_the_attempt(make_board, autojump_clock):
    board = make_board(result_max_bytes=100)

    @board.handler("big")
    async def big(ctx: JobContext) -> str:
        return "x" * 200

    @board.handler("setty")
    async def setty(ctx: JobContext) -> dict:
        return {"tags": {"a", "b"}}

    async with running_with_company(board) as (rt, company):
        failed = await rt.wait((await rt.submit(company, "big")).id, timeout=10)
        assert failed.status is JobStatus.FAILED and failed.result is None
        assert failed.error_message == (
            "the result is 202 bytes of JSON; results are at most 100 bytes: "
            "CALLBOARD_RESULT_MAX_BYTES"
        )
        failed = await rt.wait((await rt.submit(company, "setty")).id, timeout=10)
        assert failed.status is JobStatus.FAILED and failed.result is None
        assert failed.error_message == (
            "the result is not JSON: Object of type set is not JSON serializable "
            "(at result['tags'])"
        )
        assert rt.statistics().supervisor.restarts == 0


@trio_test
async def test_a_refused_result_is_retried_and_the_last_attempt_writes_its_own(
    make_board, autojump_clock
):
    board = make_board()

    @board.handler("flaky", max_attempts=3)
    async def flaky(ctx: JobContext) -> object:
        if ctx.attempt == 1:
            return {"when": {1.5}}
        if ctx.attempt == 2:
            return {"attempt": float("nan")}
        return {"attempt": ctx.attempt}

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "flaky")
        done = await rt.wait(job.id, timeout=60)
        events = await all_events(rt, job.id)
    assert done.status is JobStatus.DONE and done.attempt == 3
    assert done.result == {"attempt": 3} and done.error_message is None
    retrying = [e for e in events if e.type == EventType.RETRYING]
    assert [e.job.error_message for e in retrying] == [
        "the result is not JSON: Object of type set is not JSON serializable (at result['when'])",
        "the result is not JSON: nan is not a JSON number (at result['attempt'])",
    ]
    assert all(e.job.result is None for e in retrying)


@trio_test
async def test_a_cancel_requested_while_the_result_is_refused_ends_cancelled(
    make_board, autojump_clock
):
    board = make_board()
    started = trio.Event()
    go_on = trio.Event()

    @board.handler("stubborn", max_attempts=3)
    async def stubborn(ctx: JobContext) -> object:
        started.set()
        with trio.CancelScope(shield=True):
            await go_on.wait()
        return b"not json"

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "stubborn")
        await started.wait()
        await rt.cancel(job.id)
        go_on.set()
        ended = await rt.wait(job.id, timeout=10)
    assert ended.status is JobStatus.CANCELLED and ended.result is None
