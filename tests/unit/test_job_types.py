"""Job types: the built-in names are reserved, the demo types are off unless asked for,
what a node lists, and companies got or created, on the in-memory store."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import pytest
from boardkit import running_with_company

from callboard import Board, InvalidRequest, JobContext, JobSpec, UnknownJobType
from callboard.cli.main import build_parser
from callboard.cli.serve import settings_from
from callboard.config import SettingError, Settings, load_settings
from callboard.errors import ReservedJobType
from callboard.jobs import JobTypeInfo
from callboard.store.memory import MemoryStore


def test_demo_types_are_off_by_default_and_on_when_asked():
    assert Settings().demo_types is False
    assert Board().registry.job_types() == ["noop"]
    assert Board(demo_types=True).registry.job_types() == [
        "demo.fail",
        "demo.render",
        "demo.sleep",
        "noop",
    ]
    on = load_settings(environ={"CALLBOARD_DEMO_TYPES": "true"})
    assert on.demo_types is True
    assert load_settings(environ={"CALLBOARD_DEMO_TYPES": "0"}).demo_types is False
    with pytest.raises(SettingError, match="CALLBOARD_DEMO_TYPES: expected true or false"):
        load_settings(environ={"CALLBOARD_DEMO_TYPES": "maybe"})
    with pytest.raises(SettingError, match="demo_types"):
        Settings(demo_types="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve"], False),
        (["serve", "--demo-types"], True),
        (["serve", "--demo", "5"], True),  # the demo jobs need their types
        (["serve", "--demo", "0"], False),
    ],
)
def test_serve_flags_turn_the_demo_types_on(argv, expected, monkeypatch):
    monkeypatch.delenv("CALLBOARD_DEMO_TYPES", raising=False)
    args: argparse.Namespace = build_parser().parse_args(argv)
    assert settings_from(args).demo_types is expected


def test_serve_help_names_the_switch():
    text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    assert "--demo-types" in text and "CALLBOARD_DEMO_TYPES" in text


@pytest.mark.trio
async def test_an_unknown_demo_type_says_how_to_turn_them_on(make_board, autojump_clock):
    async with running_with_company(make_board(demo_types=False)) as (rt, company):
        with pytest.raises(UnknownJobType) as info:
            await rt.submit(company, "demo.sleep", {"seconds": 1})
        assert str(info.value) == (
            "unknown job type 'demo.sleep'; known job types: noop; the demo.* job types are "
            "off on this node: start it with `callboard serve --demo-types` (or "
            "CALLBOARD_DEMO_TYPES=true)"
        )
        # In a batch, the job's place comes first and the hint stays.
        with pytest.raises(UnknownJobType, match=r"^jobs\[1\]: .*--demo-types"):
            await rt.submit_many(company, [JobSpec("noop"), JobSpec("demo.render")])
        # Other names get no hint.
        with pytest.raises(UnknownJobType) as other:
            await rt.submit(company, "render")
        assert "demo-types" not in str(other.value)
    async with running_with_company(make_board(demo_types=True)) as (rt, company):
        with pytest.raises(UnknownJobType) as on:
            await rt.submit(company, "demo.nope")
        assert "demo-types" not in str(on.value)  # they are on: it is only a typo


@pytest.mark.parametrize("name", ["noop", "demo.sleep", "demo.fail", "demo.render"])
def test_a_handler_cannot_take_a_builtin_name(name):
    board = Board()  # demo types off: their names are still callboard's
    with pytest.raises(ReservedJobType, match=f"'{name}' is a built-in job type"):

        @board.handler(name)
        async def mine(ctx: JobContext) -> None: ...

    assert isinstance(ReservedJobType(name), ValueError)


HANDLERS_BOARD = """
import callboard

board = callboard.Board()


@board.handler("fine")
async def fine(ctx):
    pass


@board.handler("demo.render")
async def render(ctx):
    pass
"""

HANDLERS_REGISTER = """
async def noop(ctx):
    pass


def register(board):
    board.handler("noop")(noop)
"""


@pytest.mark.parametrize(
    ("module", "source", "job_type"),
    [("shadow_board", HANDLERS_BOARD, "demo.render"), ("shadow_fn", HANDLERS_REGISTER, "noop")],
)
def test_a_handler_module_taking_a_builtin_name_is_refused(
    module, source, job_type, tmp_path, monkeypatch
):
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(SettingError) as info:
        Board.from_settings(Settings(handlers=(module,)))
    assert str(info.value) == (
        f"--handlers: module {module!r} registers {job_type!r}, a built-in job type; "
        "register its handler under another name"
    )


@pytest.mark.trio
async def test_the_node_lists_every_type_with_its_defaults(make_board, autojump_clock):
    board = make_board(demo_types=True)

    @board.handler("haiku", timeout=120, max_attempts=3, concurrency=4)
    async def haiku(ctx: JobContext) -> None: ...

    async with board.running() as rt:
        listed = rt.job_type_details()
    assert [t.job_type for t in listed] == [
        "demo.fail",
        "demo.render",
        "demo.sleep",
        "haiku",
        "noop",
    ]
    by_name = {t.job_type: t for t in listed}
    assert by_name["haiku"] == JobTypeInfo("haiku", 120.0, 3, 4, False)
    assert by_name["noop"] == JobTypeInfo("noop", None, 1, None, True)
    assert by_name["demo.sleep"].builtin
    wire = by_name["haiku"].to_dict()
    assert wire == {
        "jobType": "haiku",
        "timeoutSeconds": 120.0,
        "maxAttempts": 3,
        "concurrency": 4,
        "builtIn": False,
    }
    assert JobTypeInfo.from_dict(wire) == by_name["haiku"]


@pytest.mark.trio
async def test_get_or_create_company_gives_the_same_company_every_time(autojump_clock):
    async with Board(store=MemoryStore(), workers=0).running() as rt:
        made = await rt.get_or_create_company("  acme ")
        assert made.name == "acme"
        assert await rt.get_or_create_company("acme") == made
        assert [c.name for c in await rt.companies()] == ["acme"]
        with pytest.raises(InvalidRequest, match="company name"):
            await rt.get_or_create_company("   ")


class RacingStore(MemoryStore):
    """Another node creates the company between this node's read and its insert."""

    async def get_company_by_name(self, name):
        found = await super().get_company_by_name(name)
        if found is None and not getattr(self, "raced", False):
            self.raced = True
            await self.create_company(name, datetime.now(UTC))
            return None
        return found


@pytest.mark.trio
async def test_get_or_create_company_loses_a_race_gracefully(autojump_clock):
    store = RacingStore()
    async with Board(store=store, workers=0).running() as rt:
        company = await rt.get_or_create_company("acme")
        assert store.raced
        assert [c.id for c in await rt.companies()] == [company.id]


def test_the_nodes_of_serve_processes_inherit_the_demo_types(monkeypatch):
    from callboard.cli.processes import settings_environment

    monkeypatch.delenv("CALLBOARD_DEMO_TYPES", raising=False)
    args = build_parser().parse_args(["serve", "--demo", "3"])
    env = settings_environment(settings_from(args))
    assert env["CALLBOARD_DEMO_TYPES"] == "true"
    assert load_settings(environ=env).demo_types is True
