"""Settings: flags over environment over defaults, and one clear line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from callboard.config import SettingError, load_settings, sqlite_path


def test_defaults_follow_the_data_dir():
    settings = load_settings({}, {})
    assert settings.data_dir == Path("callboard-data")
    assert settings.database_url == "sqlite:///callboard-data/callboard.db"
    assert settings.storage_dir == Path("callboard-data/assets")
    assert settings.workers == 8
    assert settings.lease_seconds == 30
    assert settings.operator_token_file == Path("callboard-data/operator.token")


def test_flags_win_over_environment():
    env = {
        "CALLBOARD_WORKERS": "3",
        "CALLBOARD_DATA_DIR": "/srv/cb",
        "CALLBOARD_LEASE_SECONDS": "12",
    }
    settings = load_settings({"workers": "5"}, env)
    assert settings.workers == 5
    assert settings.lease_seconds == 12
    assert settings.database_url == "sqlite:////srv/cb/callboard.db"
    assert sqlite_path(settings.database_url) == Path("/srv/cb/callboard.db")


def test_lists_and_durations():
    env = {"CALLBOARD_HANDLERS": "a.b, c", "CALLBOARD_EVENT_RETENTION": "36h"}
    settings = load_settings({}, env)
    assert settings.handlers == ("a.b", "c")
    assert settings.event_retention == 36 * 3600
    assert settings.job_retention == 7 * 86400  # the default


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("2d", 2 * 86400), ("90m", 5400), ("3600", 3600), ("0", None), ("never", None)],
)
def test_job_retention(raw, seconds):
    assert load_settings({}, {"CALLBOARD_JOB_RETENTION": raw}).job_retention == seconds
    assert load_settings({"handlers": ["x", "y"]}, {}).handlers == ("x", "y")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CALLBOARD_WORKERS": "many"}, "CALLBOARD_WORKERS: expected a whole number, got 'many'"),
        ({"CALLBOARD_WORKERS": "-1"}, "CALLBOARD_WORKERS: must be at least 0, got -1"),
        ({"CALLBOARD_LEASE_SECONDS": "0"}, "CALLBOARD_LEASE_SECONDS: must be a positive number"),
        ({"CALLBOARD_BIND": "8000"}, "CALLBOARD_BIND: expected HOST:PORT"),
        ({"CALLBOARD_DATABASE_URL": "mysql://x"}, "CALLBOARD_DATABASE_URL: expected sqlite:///"),
        (
            {"CALLBOARD_EVENT_RETENTION": "forever"},
            "CALLBOARD_EVENT_RETENTION: expected a duration",
        ),
        (
            {"CALLBOARD_JOB_RETENTION": "-1d"},
            "CALLBOARD_JOB_RETENTION: expected a duration such as 7d or 36h, or never",
        ),
    ],
)
def test_a_bad_value_names_the_setting(env, message):
    with pytest.raises(SettingError) as caught:
        load_settings({}, env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_bad_flag_names_the_flag():
    with pytest.raises(SettingError, match=r"^--lease-seconds: "):
        load_settings({"lease_seconds": "soon"}, {})


def test_board_is_built_from_the_same_settings():
    from callboard import Board
    from callboard.config import Settings

    assert Board().settings == Settings()
    settings = load_settings({"workers": "3", "data_dir": "/srv/cb"}, {})
    board = Board(settings=settings, lease_seconds=5)
    assert board.settings.workers == 3
    assert board.settings.lease_seconds == 5
    assert board.settings.database_url == "sqlite:////srv/cb/callboard.db"
    assert Board(event_retention=None).settings.event_retention is None
    assert Board(job_retention=None).settings.job_retention is None
    assert Board(job_retention=60).settings.job_retention == 60
    assert Board(storage_dir="x").settings.storage_dir == Path("x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": -1}, "workers: must be a whole number of at least 0, got -1"),
        ({"lease_seconds": 0}, "lease_seconds: must be a positive number of seconds, got 0"),
        ({"attachment_max_bytes": True}, "attachment_max_bytes: must be a positive number"),
        ({"database_url": "mysql://x"}, "database_url: expected sqlite:///"),
    ],
)
def test_a_bad_board_argument_names_it(kwargs, message):
    from callboard import Board

    with pytest.raises(SettingError) as caught:
        Board(**kwargs)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_the_queue_limit_defaults_by_store():
    from callboard.config import SQLITE_MAX_QUEUED, Settings, load_settings

    assert Settings().max_queued == SQLITE_MAX_QUEUED
    assert Settings(database_url="postgresql://u@h/db").max_queued == 0
    assert load_settings(environ={"CALLBOARD_MAX_QUEUED": "0"}).max_queued == 0
    with pytest.raises(ValueError, match="CALLBOARD_MAX_QUEUED"):
        load_settings(environ={"CALLBOARD_MAX_QUEUED": "-1"})
