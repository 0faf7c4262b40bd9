"""The TOML configuration file: the settings' own names as keys, checked by the rules of
flags and environment, below both in precedence (flag > environment > file > default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callboard.config import _FIELDS, SettingError, Settings, load_settings, read_config_file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callboard.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("flag", "env", "file", "expected"),
    [
        ("3", "5", 7, 3),  # the flag wins over everything
        (None, "5", 7, 5),  # then the environment
        (None, None, 7, 7),  # then the file
        (None, None, None, Settings().workers),  # then the default
    ],
)
def test_precedence_flag_environment_file_default(tmp_path, flag, env, file, expected):
    path = write(tmp_path, f"workers = {file}\n" if file is not None else "")
    environ = {"CALLBOARD_WORKERS": env} if env is not None else {}
    assert load_settings({"workers": flag}, environ, config_file=path).workers == expected


def test_the_file_named_by_callboard_config_is_read_and_the_flag_wins_over_it(tmp_path):
    named = write(tmp_path, 'bind = "127.0.0.1:9001"\nworkers = 2\n')
    other = tmp_path / "other.toml"
    other.write_text("workers = 6\n")
    environ = {"CALLBOARD_CONFIG": str(named)}
    assert load_settings({}, environ).bind == "127.0.0.1:9001"
    assert load_settings({}, environ, config_file=other).workers == 6
    assert load_settings({}, environ, config_file=other).bind == Settings().bind


def test_values_are_typed_as_toml_and_checked_as_settings(tmp_path):
    path = write(
        tmp_path,
        """
data_dir = "/srv/callboard"
database_url = "postgresql://callboard@db:5432/callboard"
workers = 0
migrate = false
lease_seconds = 12.5
event_retention = "36h"
shutdown_grace = 20
handlers = ["greetings", "billing.handlers"]
cors_origins = "https://a.example, https://b.example"
""",
    )
    settings = load_settings({}, {}, config_file=path)
    assert settings.data_dir == Path("/srv/callboard")
    assert settings.database_url == "postgresql://callboard@db:5432/callboard"
    assert (settings.workers, settings.migrate, settings.lease_seconds) == (0, False, 12.5)
    assert (settings.event_retention, settings.shutdown_grace) == (36 * 3600, 20)
    assert settings.handlers == ("greetings", "billing.handlers")
    assert settings.cors_origins == ("https://a.example", "https://b.example")


SAMPLES = {
    "bool": True,
    "int": 3,
    "float": 3.5,
    "Path": "somewhere",
    "str": None,  # per setting below
    "tuple[str, ...]": ["a"],
}
TEXT = {
    "bind": "127.0.0.1:8001",
    "database_url": "sqlite:///x.db",
    "storage_url": "file:///tmp/assets",
}


@pytest.mark.parametrize("name", list(_FIELDS))
def test_every_setting_is_accepted_from_the_file(tmp_path, name):
    """A setting added to `_FIELDS` is understood in the file with no more code."""
    hint = str(Settings.__dataclass_fields__[name].type).removesuffix(" | None")
    value = TEXT.get(name, SAMPLES[hint])
    literal = repr(value).replace("True", "true").replace("'", '"')
    assert name in read_config_file(write(tmp_path, f"{name} = {literal}\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workrs = 3", "'workrs' is not a setting; did you mean 'workers'?"),
        ("CALLBOARD_WORKERS = 3", "'CALLBOARD_WORKERS' is not a setting; did you mean 'workers'?"),
        ("[callboard]\nworkers = 3", "'callboard' is not a setting"),
        ('workers = "eight"', "workers: expected a whole number, got str 'eight'"),
        ("workers = 4.0", "workers: expected a whole number, got float 4.0"),
        ("workers = -1", "workers: must be at least 0, got -1"),
        ("migrate = 1", "migrate: expected true or false, got int 1"),
        ("handlers = [1, 2]", "handlers: expected a list of strings"),
        ('bind = "nowhere"', "bind: expected HOST:PORT"),
        ("lease_seconds = true", "lease_seconds: expected a number, got bool True"),
        ("workers = ", "not valid TOML"),
    ],
)
def test_bad_files_are_one_line_naming_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text + "\n")
    with pytest.raises(SettingError) as caught:
        load_settings({}, {}, config_file=path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_one_line_naming_where_it_was_asked(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(SettingError, match=r"^CALLBOARD_CONFIG .*nope.toml: cannot read it"):
        load_settings({}, {"CALLBOARD_CONFIG": str(missing)})
    with pytest.raises(SettingError, match=r"^--config .*nope.toml: cannot read it"):
        load_settings({}, {}, config_file=missing)


def test_an_empty_value_means_the_default_as_in_the_environment(tmp_path):
    path = write(tmp_path, 'database_url = ""\n')
    assert load_settings({}, {}, config_file=path).database_url == Settings().database_url
