"""One settings object, read from command-line flags, then CALLBOARD_* environment
variables, then a TOML configuration file (`--config` / CALLBOARD_CONFIG), then defaults
(docs/architecture.md, "Configuration"). The defaults live here
and nowhere else: `Board(...)` is built from a `Settings` (its keyword arguments
override fields of it), and `callboard serve` hands the same object to the web
server. Every value is checked here, once: a bad one raises `SettingError` whose
message names the setting and what was wrong."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import CallboardError
from .jobs import parse_duration, parse_retention


class SettingError(CallboardError, ValueError):
    """A setting with a bad value; the message names the setting (its flag, its
    environment variable, or its keyword argument) and what was wrong."""


# The namespace caps of asset storage (docs/architecture.md, "Storage").
DEFAULT_GENERATED_ASSET_MAX_BYTES = 500 * 1024 * 1024
DEFAULT_ATTACHMENT_MAX_BYTES = 10 * 1024 * 1024
#: What a handler may return, as compact JSON (jobs.encode_result checks it).
DEFAULT_RESULT_MAX_BYTES = 1024 * 1024
#: Connections the kernel holds for us until we accept them. Hypercorn's default of 100
#: overflows when many SSE clients reconnect at once (after a restart, every dashboard
#: and browser does): the kernel then drops handshakes, falls back to SYN cookies and
#: resets connections whose request it has already acknowledged. Linux caps this at
#: net.core.somaxconn.
LISTEN_BACKLOG = 4096
#: The default backlog limit of a node on the embedded store (see Settings.max_queued).
SQLITE_MAX_QUEUED = 2000


# --- storage URLs (storage/location.py opens them) ---------------------------------


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "some/prefix" (no slash at either end)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(url: str) -> S3Location:
    """`s3://bucket` or `s3://bucket/prefix`; credentials never go in the URL."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(f"expected s3://bucket/prefix, got a {parts.scheme or 'bare'} URL")
    if "@" in parts.netloc or parts.password is not None:
        # Not echoed: it may hold a secret.
        raise ValueError(
            "an s3:// storage URL carries no credentials: use AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or the shared AWS credentials file"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            "an s3:// storage URL is s3://bucket/prefix only; the endpoint and region come "
            "from AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) and AWS_REGION"
        )
    bucket = parts.netloc
    if not bucket or not all(c.isalnum() or c in "-._" for c in bucket) or len(bucket) > 63:
        raise ValueError(f"not a bucket name: {bucket!r} (letters, digits, '-', '.', '_')")
    prefix = parts.path.strip("/")
    if any(segment in ("", ".", "..") for segment in prefix.split("/")) and prefix:
        raise ValueError(f"the prefix {prefix!r} has an empty, '.' or '..' segment")
    return S3Location(bucket, prefix)


def file_url(path: Path) -> str:
    return Path(path).absolute().as_uri()


def check_storage_url(url: str) -> str:
    """`url` if it names a backend, else ValueError with what to write instead (the
    message never repeats what may be a secret)."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme == "file":
        local_path(url)
    elif scheme == "s3":
        parse_s3_url(url)
    else:
        raise ValueError(
            "expected file:///absolute/path or s3://bucket/prefix, got "
            + (f"a {scheme}:// URL" if scheme else repr(url))
        )
    return url


def local_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise ValueError(f"expected file:///absolute/path (three slashes), got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"a file:// storage URL is a path only, got {url!r}")
    return Path(unquote(parts.path))


@dataclass(frozen=True, slots=True)
class Settings:
    """A node's configuration. `database_url` and `storage_dir` left empty follow
    `data_dir` (`sqlite:///<data dir>/callboard.db`, `<data dir>/assets`); they are
    resolved when the object is made, so `dataclasses.replace(s, data_dir=...)` keeps
    the old paths: pass them too, or build a new Settings."""

    data_dir: Path = Path("callboard-data")
    bind: str = "127.0.0.1:8000"
    database_url: str = ""
    #: Connections per node to PostgreSQL (the SQLite store has its own threads).
    database_pool_size: int = 10
    #: Apply pending migrations at start; False refuses to start on an older schema.
    migrate: bool = True
    storage_dir: Path = Path()
    #: Where assets live: file:///path or s3://bucket/prefix (storage/location.py); empty
    #: for `storage_dir`. A file:// URL sets `storage_dir` to its path.
    storage_url: str = ""
    workers: int = 8
    #: Nodes `callboard serve` runs on this machine behind one port (PostgreSQL only).
    processes: int = 1
    #: The front door answers submits 503 (Retry-After) while more jobs than this are
    #: queued and due; 0 for no limit. None: 2,000 on SQLite, where the node that
    #: accepts also runs them (an overrun queue starves its own workers), no limit on
    #: PostgreSQL, where the queue is the buffer between API nodes and worker nodes.
    max_queued: int | None = None
    handlers: tuple[str, ...] = ()
    lease_seconds: float = 30.0
    generated_asset_max_bytes: int = DEFAULT_GENERATED_ASSET_MAX_BYTES
    attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX_BYTES
    #: What a handler may return, as compact JSON: a bigger result fails the attempt.
    result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES
    #: Seconds events are kept for replay; None keeps them for ever.
    event_retention: float | None = 7 * 24 * 3600
    #: Seconds finished jobs (done, failed, cancelled) are kept after they finished,
    #: then deleted with their events; None keeps them for ever.
    job_retention: float | None = 7 * 24 * 3600
    cors_origins: tuple[str, ...] = ()
    #: Seconds running jobs get to finish when the node stops.
    shutdown_grace: float = 10.0
    #: End the process when its event loop stays blocked for half a lease (a handler
    #: that blocks it), before another node can take its jobs; False only warns.
    loop_stall_exit: bool = True
    #: Run the built-in `demo.*` job types (README, "Job types"): off unless asked for,
    #: since one `demo.render` job may write 500 MiB. `serve --demo N` turns them on.
    demo_types: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data_dir = Path(self.data_dir)
        object.__setattr__(self, "data_dir", data_dir)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data_dir / 'callboard.db'}")
        if self.max_queued is None:
            default = SQLITE_MAX_QUEUED if self.embedded else 0
            object.__setattr__(self, "max_queued", default)
        if self.storage_url.startswith("file://"):
            object.__setattr__(self, "storage_dir", _local_path("storage_url", self.storage_url))
        if self.storage_dir == Path():
            object.__setattr__(self, "storage_dir", data_dir / "assets")
        object.__setattr__(self, "storage_dir", Path(self.storage_dir))
        _check(self)

    @property
    def embedded(self) -> bool:
        """The embedded SQLite store: one process, one writer."""
        return self.database_url.startswith("sqlite:///")

    @property
    def storage_location(self) -> str:
        """The storage URL in effect: `storage_url`, else the file:// URL of `storage_dir`."""
        return self.storage_url or file_url(self.storage_dir)

    @property
    def operator_token_file(self) -> Path:
        return self.data_dir / "operator.token"


def _positive_int(name: str, raw: str, minimum: int = 1) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}: expected a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise SettingError(f"{name}: must be a positive number of seconds, got {raw!r}")
    return value


def _duration(name: str, raw: str) -> float:
    """Seconds, or a number with s/m/h/d (e.g. "7d", "36h")."""
    try:
        return parse_duration(raw)
    except ValueError:
        raise SettingError(
            f"{name}: expected a duration such as 3600, 90m, 36h or 7d, got {raw!r}"
        ) from None


def _retention(name: str, raw: str) -> float | None:
    """A duration, or 0 / never / off: keep for ever (None)."""
    try:
        return parse_retention(raw)
    except ValueError:
        raise SettingError(
            f"{name}: expected a duration such as 7d or 36h, or never, got {raw!r}"
        ) from None


def _bind(name: str, raw: str) -> str:
    """HOST:PORT; port 0 asks the system for a free port (tests, benchmarks)."""
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingError(f"{name}: expected HOST:PORT such as 127.0.0.1:8000, got {raw!r}")
    return raw


def _database_url(name: str, raw: str) -> str:
    if raw.startswith("sqlite:///") and len(raw) > len("sqlite:///"):
        return raw
    if raw.startswith(("postgresql://", "postgres://")):
        return raw
    raise SettingError(
        f"{name}: expected sqlite:///relative.db, sqlite:////absolute.db or "
        f"postgresql://user@host:port/db, got {raw!r}"
    )


def _storage_url(name: str, raw: str) -> str:
    try:
        return check_storage_url(raw)
    except ValueError as exc:
        raise SettingError(f"{name}: {exc}") from None


def _local_path(name: str, raw: str) -> Path:
    try:
        return local_path(raw)
    except ValueError as exc:
        raise SettingError(f"{name}: {exc}") from None


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name}: expected true or false, got {raw!r}")


def redact_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"


def _list(_name: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


# setting name -> (environment variable, parser)
_FIELDS: dict[str, tuple[str, Any]] = {
    "data_dir": ("CALLBOARD_DATA_DIR", lambda n, r: Path(r)),
    "bind": ("CALLBOARD_BIND", _bind),
    "database_url": ("CALLBOARD_DATABASE_URL", _database_url),
    "database_pool_size": ("CALLBOARD_DATABASE_POOL_SIZE", _positive_int),
    "migrate": ("CALLBOARD_MIGRATE", _bool),
    "storage_dir": ("CALLBOARD_STORAGE_DIR", lambda n, r: Path(r)),
    "storage_url": ("CALLBOARD_STORAGE_URL", _storage_url),
    "workers": ("CALLBOARD_WORKERS", lambda n, r: _positive_int(n, r, minimum=0)),
    "processes": ("CALLBOARD_PROCESSES", _positive_int),
    "max_queued": ("CALLBOARD_MAX_QUEUED", lambda n, r: _positive_int(n, r, minimum=0)),
    "handlers": ("CALLBOARD_HANDLERS", _list),
    "lease_seconds": ("CALLBOARD_LEASE_SECONDS", _positive_float),
    "generated_asset_max_bytes": ("CALLBOARD_GENERATED_ASSET_MAX_BYTES", _positive_int),
    "attachment_max_bytes": ("CALLBOARD_ATTACHMENT_MAX_BYTES", _positive_int),
    "result_max_bytes": ("CALLBOARD_RESULT_MAX_BYTES", _positive_int),
    "event_retention": ("CALLBOARD_EVENT_RETENTION", _duration),
    "job_retention": ("CALLBOARD_JOB_RETENTION", _retention),
    "cors_origins": ("CALLBOARD_CORS_ORIGINS", _list),
    "shutdown_grace": ("CALLBOARD_SHUTDOWN_GRACE", _duration),
    "loop_stall_exit": ("CALLBOARD_LOOP_STALL_EXIT", _bool),
    "demo_types": ("CALLBOARD_DEMO_TYPES", _bool),
}

#: Each setting's type as `Settings` declares it (a string: annotations are postponed).
_SETTING_TYPES = {f.name: f.type for f in fields(Settings)}


#: The environment variable naming the configuration file (as `--config` does).
CONFIG_ENV = "CALLBOARD_CONFIG"


def config_path(
    flag: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> tuple[str, Path] | None:
    """The configuration file asked for, with where it was asked (for messages): the
    `--config` flag, else CALLBOARD_CONFIG, else none (no file is read by default)."""
    if flag:
        return "--config", Path(flag)
    if environ.get(CONFIG_ENV, "").strip():
        return CONFIG_ENV, Path(environ[CONFIG_ENV].strip())
    return None


def _file_kind(name: str) -> str:
    """What a setting's value may be in TOML, from its type in `Settings` (so a setting
    added to `_FIELDS` is understood in the file without more code)."""
    hint = str(_SETTING_TYPES.get(name, "str"))
    if _FIELDS[name][1] is _duration:
        return "duration"
    if hint == "bool":
        return "bool"
    if hint.startswith("int"):
        return "int"
    if hint.startswith("float"):
        return "number"
    if hint.startswith("tuple"):
        return "list"
    return "text"


_KIND_WANTED = {
    "bool": "true or false",
    "int": "a whole number",
    "number": "a number",
    "duration": 'a number of seconds or a duration string such as "7d"',
    "list": 'a list of strings such as ["a", "b"]',
    "text": "a string",
}


def _file_text(kind: str, value: object) -> str | None:
    """The value as the text its parser reads, or None when TOML gave the wrong type."""
    if kind == "bool":
        return ("true" if value else "false") if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if kind == "int":
        return str(value) if isinstance(value, int) else None
    if kind in ("number", "duration") and isinstance(value, int | float):
        return repr(value)
    if kind == "list" and isinstance(value, list):
        return ",".join(value) if all(isinstance(item, str) for item in value) else None
    return value if isinstance(value, str) else None


def read_config_file(path: str | os.PathLike[str], origin: str = "--config") -> dict[str, Any]:
    """The settings of a TOML file, checked by the rules of the flags and environment:
    top-level keys named as the settings (`workers = 8`, `database_url = "..."`).
    SettingError (one line, naming the file) for a file that cannot be read, is not
    TOML, has a key that is no setting, or a value of the wrong type or range."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise SettingError(f"{origin} {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"{origin} {path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key not in _FIELDS:
            near = difflib.get_close_matches(
                key.lower().removeprefix("callboard_"), list(_FIELDS), n=1
            )
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(_FIELDS)}"
            raise SettingError(f"{path}: {key!r} is not a setting{hint}")
        kind = _file_kind(key)
        raw = _file_text(kind, value)
        if raw is None:
            raise SettingError(
                f"{path}: {key}: expected {_KIND_WANTED[kind]}, got {type(value).__name__} "
                f"{value!r}"
            )
        if raw.strip():  # as in the environment, an empty value means the default
            values[key] = _FIELDS[key][1](f"{path}: {key}", raw.strip())
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Flags win over the environment, which wins over the configuration file
    (`config_file`, else the file CALLBOARD_CONFIG names, if any), which wins over
    defaults. Flags arrive already typed by argparse but are checked by the same rules
    as the environment and the file."""
    env = os.environ if environ is None else environ
    where = config_path(config_file, env)
    from_file = read_config_file(where[1], where[0]) if where else {}
    values: dict[str, Any] = {}
    for name, (var, parse) in _FIELDS.items():
        flag = (flags or {}).get(name)
        label = f"--{name.replace('_', '-')}"
        if flag is not None:
            raw = ",".join(flag) if isinstance(flag, list | tuple) else str(flag)
            values[name] = parse(label, raw)
        elif env.get(var, "").strip():
            values[name] = parse(var, env[var].strip())
        elif name in from_file:
            values[name] = from_file[name]
    return Settings(**values)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")
    )


def _check(settings: Settings) -> None:
    """The typed values' rules (the parsers above check text; a Settings built in Python
    gets the same rules here)."""
    if not _whole(settings.workers) or settings.workers < 0:
        raise SettingError(
            f"workers: must be a whole number of at least 0, got {settings.workers!r}"
        )
    if not _whole(settings.processes) or settings.processes < 1:
        raise SettingError(
            f"processes: must be a whole number of at least 1, got {settings.processes!r}"
        )
    if not _whole(settings.max_queued) or settings.max_queued < 0:  # type: ignore[operator]
        raise SettingError(
            f"max_queued: must be a whole number of at least 0, got {settings.max_queued!r}"
        )
    if not _whole(settings.database_pool_size) or settings.database_pool_size < 1:
        raise SettingError(
            f"database_pool_size: must be a whole number of at least 1, "
            f"got {settings.database_pool_size!r}"
        )
    for name in ("generated_asset_max_bytes", "attachment_max_bytes", "result_max_bytes"):
        value = getattr(settings, name)
        if not _whole(value) or value < 1:
            raise SettingError(f"{name}: must be a positive number of bytes, got {value!r}")
    for name in ("lease_seconds", "shutdown_grace"):
        value = getattr(settings, name)
        if not _seconds(value):
            raise SettingError(f"{name}: must be a positive number of seconds, got {value!r}")
    if settings.event_retention is not None and not _seconds(settings.event_retention):
        raise SettingError(
            f"event_retention: must be a positive number of seconds or None, "
            f"got {settings.event_retention!r}"
        )
    if not isinstance(settings.demo_types, bool):
        raise SettingError(f"demo_types: must be True or False, got {settings.demo_types!r}")
    if settings.job_retention is not None and not _seconds(settings.job_retention):
        raise SettingError(
            f"job_retention: must be a positive number of seconds or None, "
            f"got {settings.job_retention!r}"
        )
    _database_url("database_url", settings.database_url)
    _bind("bind", settings.bind)


def sqlite_path(database_url: str) -> Path:
    """`sqlite:///rel.db` is relative to the working directory, `sqlite:////abs.db`
    absolute, as SQLAlchemy spells them."""
    if not database_url.startswith("sqlite:///"):
        raise SettingError(f"not a SQLite URL: {database_url!r}")
    return Path(database_url[len("sqlite:///") :])
