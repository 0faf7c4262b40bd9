"""The parts of `serve --processes` that need no child: the setting, the settings a
child is handed, and the listening sockets the parent binds."""

from __future__ import annotations

import dataclasses
import socket
import sys
from pathlib import Path

import pytest

from callboard.cli.main import build_parser
from callboard.cli.processes import ChildInfo, open_listeners, settings_environment
from callboard.config import SettingError, Settings, load_settings


def test_the_setting_comes_from_the_flag_or_the_environment():
    assert Settings().processes == 1
    assert load_settings({}, {"CALLBOARD_PROCESSES": "4"}).processes == 4
    args = build_parser().parse_args(["serve", "--processes", "3"])
    assert load_settings({"processes": args.processes}, {"CALLBOARD_PROCESSES": "4"}).processes == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CALLBOARD_PROCESSES": "0"}, "CALLBOARD_PROCESSES: must be at least 1, got 0"),
        ({"CALLBOARD_PROCESSES": "two"}, "CALLBOARD_PROCESSES: expected a whole number"),
    ],
)
def test_a_bad_count_names_the_setting(env, message):
    with pytest.raises(SettingError, match=f"^{message}"):
        load_settings({}, env)


@pytest.mark.parametrize("value", [0, -2, True, 1.5])
def test_a_bad_count_in_python_is_refused(value):
    with pytest.raises(SettingError, match=r"^processes: must be a whole number of at least 1"):
        Settings(processes=value)


def test_a_child_loads_exactly_the_settings_of_its_parent():
    parent = Settings(
        data_dir=Path("/srv/cb"),
        bind="0.0.0.0:9000",
        database_url="postgresql://app:secret@db:5432/cb",
        database_pool_size=4,
        migrate=False,
        storage_dir=Path("/srv/assets"),
        workers=0,
        processes=3,
        handlers=("shop.jobs", "shop.more"),
        lease_seconds=12.5,
        generated_asset_max_bytes=1000,
        attachment_max_bytes=2000,
        event_retention=36 * 3600,
        cors_origins=("https://a.example", "https://b.example"),
        shutdown_grace=20.0,
        loop_stall_exit=False,
    )
    child = load_settings({}, settings_environment(parent))
    assert child == dataclasses.replace(parent, processes=1)
    assert load_settings({}, settings_environment(Settings())) == Settings()


def test_child_info_travels_in_one_variable(monkeypatch):
    info = ChildInfo("p2", 5, 7, 9)
    monkeypatch.setenv("CALLBOARD_CHILD_PROCESS", info.encode())
    assert ChildInfo.from_environment() == info
    monkeypatch.setenv("CALLBOARD_CHILD_PROCESS", "nonsense")
    assert ChildInfo.from_environment() is None
    monkeypatch.delenv("CALLBOARD_CHILD_PROCESS")
    assert ChildInfo.from_environment() is None


def test_port_0_gives_every_child_the_same_port():
    sockets = open_listeners("127.0.0.1:0", 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1 and 0 not in ports
        if sys.platform.startswith("linux"):
            assert len(sockets) == 3  # one each: the kernel spreads connections over them
        # Every socket listens: a connection is accepted by the kernel at once.
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=5):
            pass
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_someone_listens_on_is_refused_not_shared():
    with socket.socket() as other:
        # Even a listener that allows SO_REUSEPORT must not be joined silently.
        if hasattr(socket, "SO_REUSEPORT"):
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(SettingError, match=f"^bind 127.0.0.1:{port}: cannot listen there"):
            open_listeners(f"127.0.0.1:{port}", 2)
