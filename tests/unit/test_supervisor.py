"""The supervisor's policy, under virtual time (pytest-trio's autojump_clock)."""

from __future__ import annotations

import pytest
import trio

from callboard.runtime import (
    ChildSpec,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEscalation,
)

pytestmark = pytest.mark.trio


class Fatal(BaseException):
    """Stands in for KeyboardInterrupt/SystemExit, which pytest itself reacts to."""


class Probe:
    """A child whose successive runs follow a script, recording what happens to it.

    Script entries: "forever" (the default once the script is used up), "exit",
    "crash", "fatal", "fail_start", or (action, seconds) to act after a while.
    """

    def __init__(
        self, name: str, events: list[str], script: list[object] | None = None, ready_after=0.0
    ) -> None:
        self.name = name
        self.events = events
        self.script = list(script or [])
        self.ready_after = ready_after
        self.start_times: list[float] = []
        self.stop_times: list[float] = []

    @property
    def starts(self) -> int:
        return len(self.start_times)

    def spec(self, **kwargs) -> ChildSpec:
        return ChildSpec(self.name, self, **kwargs)

    async def __call__(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.start_times.append(trio.current_time())
        self.events.append(f"{self.name}:start")
        action = self.script.pop(0) if self.script else "forever"
        await trio.sleep(self.ready_after)
        if action == "fail_start":
            raise OSError(f"{self.name} cannot start")
        task_status.started(self.name)
        self.events.append(f"{self.name}:ready")
        if isinstance(action, tuple):
            action, lifetime = action
            await trio.sleep(lifetime)
        if action == "exit":
            return
        if action == "fatal":
            raise Fatal
        if action == "crash":
            raise ValueError(f"{self.name} crash {self.starts}")
        try:
            await trio.sleep_forever()
        finally:
            self.stop_times.append(trio.current_time())
            self.events.append(f"{self.name}:stop")


def probes(events: list[str], *names: str) -> list[Probe]:
    return [Probe(name, events) for name in names]


def after(events: list[str], marker: str) -> list[str]:
    """The events recorded after the first occurrence of marker."""
    return events[events.index(marker) + 1 :]


async def test_children_start_in_order_and_supervisor_is_ready_after_all(autojump_clock):
    events: list[str] = []
    children = [Probe(name, events, ready_after=1.0) for name in "abc"]
    supervisor = Supervisor("root", [child.spec() for child in children])
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(supervisor.run)
        events.append("root:ready")
        assert handle is supervisor
        assert trio.current_time() - t0 == pytest.approx(3.0)
        assert events == [
            "a:start",
            "a:ready",
            "b:start",
            "b:ready",
            "c:start",
            "c:ready",
            "root:ready",
        ]
        stats = supervisor.statistics()
        assert stats.running
        assert [(c.name, c.running) for c in stats.children] == [
            ("a", True),
            ("b", True),
            ("c", True),
        ]
        await handle.stop()
    assert after(events, "root:ready") == ["c:stop", "b:stop", "a:stop"]
    assert not supervisor.statistics().running


async def test_one_for_one_restarts_only_the_crashed_child(autojump_clock, caplog):
    events: list[str] = []
    a, b, c = probes(events, "a", "b", "c")
    b.script = ["crash"]
    supervisor = Supervisor("root", [a.spec(), b.spec(), c.spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)
        assert (a.starts, b.starts, c.starts) == (1, 2, 1)
        stats = supervisor.statistics()
        assert stats.restarts == 1
        by_name = {child.name: child for child in stats.children}
        assert by_name["b"].restarts == 1
        assert by_name["b"].last_error == repr(ValueError("b crash 1"))
        assert by_name["a"].last_error is None and by_name["c"].last_error is None
        assert all(child.running for child in stats.children)
        await supervisor.stop()
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 1
    assert crashes[0].name == "callboard.runtime"
    assert crashes[0].exc_info is not None and crashes[0].exc_info[0] is ValueError


async def test_one_for_all_restarts_every_child(autojump_clock):
    events: list[str] = []
    a, b, c = probes(events, "a", "b", "c")
    b.script = ["crash"]
    supervisor = Supervisor("root", [a.spec(), b.spec(), c.spec()], strategy=Strategy.ONE_FOR_ALL)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)
        assert (a.starts, b.starts, c.starts) == (2, 2, 2)
        # The siblings are stopped in reverse order, then all start again in order.
        assert after(events, "c:ready")[:8] == [
            "c:stop",
            "a:stop",
            "a:start",
            "a:ready",
            "b:start",
            "b:ready",
            "c:start",
            "c:ready",
        ]
        stats = supervisor.statistics()
        # One restart, however many children it took; the cancelled siblings did not crash.
        assert stats.restarts == 1
        assert [child.restarts for child in stats.children] == [1, 1, 1]
        assert [child.last_error is None for child in stats.children] == [True, False, True]
        await supervisor.stop()


async def test_rest_for_one_restarts_the_crashed_child_and_later_ones(autojump_clock):
    events: list[str] = []
    a, b, c, d = probes(events, "a", "b", "c", "d")
    b.script = ["crash"]
    supervisor = Supervisor(
        "root", [p.spec() for p in (a, b, c, d)], strategy=Strategy.REST_FOR_ONE
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)
        assert (a.starts, b.starts, c.starts, d.starts) == (1, 2, 2, 2)
        assert "a:stop" not in events
        assert after(events, "d:ready")[:8] == [
            "d:stop",
            "c:stop",
            "b:start",
            "b:ready",
            "c:start",
            "c:ready",
            "d:start",
            "d:ready",
        ]
        await supervisor.stop()


@pytest.mark.parametrize(
    ("restart", "outcome", "starts"),
    [
        (Restart.PERMANENT, "exit", 2),
        (Restart.PERMANENT, "crash", 2),
        (Restart.TRANSIENT, "exit", 1),
        (Restart.TRANSIENT, "crash", 2),
        (Restart.TEMPORARY, "exit", 1),
        (Restart.TEMPORARY, "crash", 1),
    ],
)
async def test_restart_types(autojump_clock, restart, outcome, starts):
    events: list[str] = []
    keeper, child = probes(events, "keeper", "child")
    child.script = [outcome]
    supervisor = Supervisor("root", [keeper.spec(), child.spec(restart=restart)])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)
        assert child.starts == starts
        stats = supervisor.statistics()
        assert stats.restarts == starts - 1
        assert stats.children[1].running is (starts == 2)
        assert stats.children[0].running
        await supervisor.stop()


async def test_supervisor_returns_once_every_child_stopped_for_good(autojump_clock):
    events: list[str] = []
    a, b = probes(events, "a", "b")
    a.script = [("crash", 2.0)]
    b.script = ["exit"]
    supervisor = Supervisor(
        "root", [a.spec(restart=Restart.TEMPORARY), b.spec(restart=Restart.TRANSIENT)]
    )
    await supervisor.run()
    assert trio.current_time() == pytest.approx(2.0)
    assert (a.starts, b.starts) == (1, 1)
    stats = supervisor.statistics()
    assert stats.restarts == 0 and not stats.running
    assert not any(child.running for child in stats.children)


async def test_a_clean_end_logs_a_calm_line_and_a_crash_keeps_its_warning(autojump_clock, caplog):
    """A TRANSIENT child that returns (the web server after its drain) ended normally:
    its line must not read like a failure; a TEMPORARY child that crashed still gets
    "stopped for good" after its traceback."""
    events: list[str] = []
    a, b = probes(events, "a", "b")
    a.script = [("crash", 2.0)]
    b.script = ["exit"]
    supervisor = Supervisor(
        "root", [a.spec(restart=Restart.TEMPORARY), b.spec(restart=Restart.TRANSIENT)]
    )
    caplog.set_level("INFO", logger="callboard.runtime")
    await supervisor.run()
    lines = [r.getMessage() for r in caplog.records if r.name == "callboard.runtime"]
    assert "supervisor 'root': child 'b' ended normally" in lines
    assert "supervisor 'root': child 'a' stopped for good" in lines
    assert not any("'b' stopped for good" in line for line in lines)


async def test_intensity_exceeded_escalates_and_stops_children_in_reverse(autojump_clock):
    events: list[str] = []
    a, b, c = probes(events, "a", "b", "c")
    b.script = ["crash"] * 10
    supervisor = Supervisor("root", [a.spec(), b.spec(), c.spec()], max_restarts=2, period=10.0)
    with pytest.raises(SupervisorEscalation) as info:
        await supervisor.run()
    escalation = info.value
    # Bare, not wrapped in an exception group.
    assert type(escalation) is SupervisorEscalation
    assert (escalation.supervisor, escalation.child) == ("root", "b")
    assert isinstance(escalation.error, ValueError)
    assert str(escalation.error) == "b crash 3"
    assert escalation.__cause__ is escalation.error
    assert (a.starts, b.starts, c.starts) == (1, 3, 1)
    assert events[-3:] == ["b:ready", "c:stop", "a:stop"]
    stats = supervisor.statistics()
    assert stats.restarts == 2 and not stats.running


async def test_backoff_grows_up_to_its_cap_and_resets_after_a_quiet_period(autojump_clock):
    events: list[str] = []
    keeper, child = probes(events, "keeper", "child")
    child.script = ["crash", "crash", "crash", "crash", ("crash", 20.0), "crash"]
    supervisor = Supervisor(
        "root",
        [keeper.spec(), child.spec()],
        max_restarts=10,
        period=10.0,
        backoff_initial=1.0,
        backoff_max=4.0,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        t0 = child.start_times[0]
        await trio.sleep(60)
        # Delays 1, 2, 4, then capped at 4; after 20 quiet seconds (> period) back to 1, 2.
        assert [t - t0 for t in child.start_times] == pytest.approx([0, 1, 3, 7, 11, 32, 34])
        assert supervisor.statistics().restarts == 6
        assert keeper.starts == 1
        await supervisor.stop()


async def test_stop_interrupts_the_backoff(autojump_clock):
    events: list[str] = []
    (child,) = probes(events, "child")
    child.script = ["crash"]
    supervisor = Supervisor("root", [child.spec()], backoff_initial=100.0, backoff_max=100.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)
        t0 = trio.current_time()
        await supervisor.stop()
        assert trio.current_time() == t0
    assert child.starts == 1


async def test_cancelling_the_supervisor_propagates_and_is_not_a_restart(autojump_clock):
    events: list[str] = []
    a, b, c = probes(events, "a", "b", "c")
    supervisor = Supervisor("root", [a.spec(), b.spec(), c.spec()])
    returned = False
    with trio.move_on_after(5) as scope:
        await supervisor.run()
        returned = True
    assert scope.cancelled_caught
    assert not returned
    # Even under an outer cancellation the children stop in reverse order.
    assert after(events, "c:ready") == ["c:stop", "b:stop", "a:stop"]
    stats = supervisor.statistics()
    assert stats.restarts == 0 and not stats.running
    assert all(child.last_error is None and child.restarts == 0 for child in stats.children)


async def test_cancelling_during_start_up_interrupts_the_starting_child(autojump_clock):
    events: list[str] = []
    a = Probe("a", events)
    slow = Probe("slow", events, ready_after=100.0)
    supervisor = Supervisor("root", [a.spec(), slow.spec()])
    with trio.move_on_after(5) as scope:
        await supervisor.run()
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(5.0)
    assert events == ["a:start", "a:ready", "slow:start", "a:stop"]


async def test_nested_escalation_reaches_the_parent_which_applies_its_policy(autojump_clock):
    events: list[str] = []
    sibling, leaf = probes(events, "sibling", "leaf")
    leaf.script = ["crash"] * 100
    inner = Supervisor("inner", [leaf.spec()], max_restarts=1, backoff_initial=0.0)
    outer = Supervisor(
        "outer",
        [sibling.spec(), ChildSpec("inner", inner.run)],
        max_restarts=2,
        backoff_initial=0.0,
    )
    with pytest.raises(SupervisorEscalation) as info:
        await outer.run()
    escalation = info.value
    assert (escalation.supervisor, escalation.child) == ("outer", "inner")
    nested = escalation.error
    assert isinstance(nested, SupervisorEscalation)
    assert (nested.supervisor, nested.child) == ("inner", "leaf")
    assert isinstance(nested.error, ValueError)
    # The parent restarted the inner supervisor twice; each run of it restarted the leaf once.
    assert leaf.starts == 3 * 2
    assert outer.statistics().children[1].restarts == 2
    assert inner.statistics().restarts == 3
    # ONE_FOR_ONE at the parent: the sibling ran throughout and was stopped at the end.
    assert sibling.starts == 1
    assert events[-1] == "sibling:stop"


async def test_a_nested_supervisor_stopped_by_its_parent_has_not_crashed(autojump_clock):
    events: list[str] = []
    leaf, crasher = probes(events, "leaf", "crasher")
    crasher.script = ["crash"]
    inner = Supervisor("inner", [leaf.spec()])
    outer = Supervisor(
        "outer",
        [ChildSpec("inner", inner.run), crasher.spec()],
        strategy=Strategy.ONE_FOR_ALL,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(outer.run)
        await trio.sleep(1)
        assert (leaf.starts, crasher.starts) == (2, 2)
        assert events.count("leaf:stop") == 1
        by_name = {child.name: child for child in outer.statistics().children}
        assert by_name["inner"].last_error is None
        assert by_name["inner"].restarts == 1
        assert outer.statistics().restarts == 1
        assert inner.statistics().restarts == 0
        await outer.stop()


async def test_an_exception_group_from_a_child_is_a_crash(autojump_clock):
    runs: list[float] = []

    async def child(*, task_status=trio.TASK_STATUS_IGNORED):
        runs.append(trio.current_time())
        task_status.started()
        if len(runs) == 1:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                raise KeyError("inner")
        await trio.sleep_forever()

    supervisor = Supervisor("root", [ChildSpec("child", child)])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)
        assert len(runs) == 2
        assert supervisor.statistics().children[0].last_error.startswith("ExceptionGroup(")
        await supervisor.stop()


async def test_an_error_raised_while_stopping_is_logged_not_restarted(autojump_clock, caplog):
    async def messy(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            raise RuntimeError("cleanup failed")

    supervisor = Supervisor("root", [ChildSpec("messy", messy)])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await supervisor.stop()
    stats = supervisor.statistics()
    assert stats.restarts == 0
    assert stats.children[0].last_error == repr(RuntimeError("cleanup failed"))
    [record] = [r for r in caplog.records if "while being stopped" in r.getMessage()]
    assert record.levelname == "WARNING" and record.exc_info is not None


async def test_shutdown_timeout_bounds_the_wait_for_a_stubborn_child(autojump_clock, caplog):
    events: list[str] = []
    a, c = probes(events, "a", "c")
    stubborn_done: list[float] = []

    async def stubborn(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(10)
            stubborn_done.append(trio.current_time())

    supervisor = Supervisor(
        "root", [a.spec(), ChildSpec("b", stubborn, shutdown_timeout=1.0), c.spec()]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        t0 = trio.current_time()
        await supervisor.stop()
        t1 = trio.current_time()
    # The supervisor waited 1 s for b, then moved on to a; it could not kill b,
    # so run() (and stop()) ended only when b finished its shielded cleanup.
    assert c.stop_times == [t0]
    assert a.stop_times == [pytest.approx(t0 + 1.0)]
    assert stubborn_done == [pytest.approx(t0 + 10.0)]
    assert t1 == pytest.approx(t0 + 10.0)
    assert any("ignored its 1.0s shutdown deadline" in r.getMessage() for r in caplog.records)


async def test_failed_initial_start_escalates_at_once(autojump_clock):
    events: list[str] = []
    a, b, c = probes(events, "a", "b", "c")
    b.script = ["fail_start"]
    supervisor = Supervisor("root", [a.spec(), b.spec(), c.spec()])
    async with trio.open_nursery() as nursery:
        with pytest.raises(SupervisorEscalation) as info:
            await nursery.start(supervisor.run)
    assert info.value.child == "b"
    assert "failed to start" in str(info.value)
    assert isinstance(info.value.error, OSError)
    assert info.value.__cause__ is info.value.error
    assert (a.starts, b.starts, c.starts) == (1, 1, 0)
    assert events[-1] == "a:stop"
    assert supervisor.statistics().restarts == 0


async def test_failed_start_during_a_restart_counts_as_a_crash(autojump_clock):
    events: list[str] = []
    (child,) = probes(events, "child")
    child.script = ["crash", "fail_start"]
    supervisor = Supervisor("root", [child.spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(5)
        assert child.starts == 3
        stats = supervisor.statistics()
        assert stats.restarts == 2
        assert stats.children[0].running
        assert stats.children[0].last_error == repr(OSError("child cannot start"))
        await supervisor.stop()


async def test_base_exceptions_propagate_and_are_never_restarted(autojump_clock):
    events: list[str] = []
    a, b, c = probes(events, "a", "b", "c")
    b.script = [("fatal", 1.0)]
    supervisor = Supervisor("root", [a.spec(), b.spec(), c.spec()])
    with pytest.RaisesGroup(Fatal):
        await supervisor.run()
    assert b.starts == 1
    assert after(events, "c:ready") == ["c:stop", "a:stop"]
    assert supervisor.statistics().restarts == 0


async def test_run_refuses_to_run_twice_at_once(autojump_clock):
    events: list[str] = []
    supervisor = Supervisor("root", [Probe("a", events).spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with pytest.raises(RuntimeError, match="already running"):
            await supervisor.run()
        await supervisor.stop()
    # Not running any more: stop() has nothing to do.
    await supervisor.stop()
    assert events == ["a:start", "a:ready", "a:stop"]


async def test_configuration_is_checked():
    async def child(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()

    with pytest.raises(ValueError, match="unique"):
        Supervisor("root", [ChildSpec("a", child), ChildSpec("a", child)])
    with pytest.raises(ValueError, match="max_restarts"):
        Supervisor("root", [], max_restarts=-1)
    with pytest.raises(ValueError, match="backoff"):
        Supervisor("root", [], backoff_initial=2.0, backoff_max=1.0)
    with pytest.raises(ValueError, match="shutdown_timeout"):
        ChildSpec("a", child, shutdown_timeout=-1)
