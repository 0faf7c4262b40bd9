"""Names in asset storage: namespaces, object keys, and the validation of the
filenames and content types callers give.

An object key is `<company id>/<namespace>/<yyyy>/<mm>/<dd>/<uuid>-<safe name>` (UTC
date), the same on every backend. The random uuid makes every key new, so nothing is
ever overwritten and the sanitised name only has to be safe, not unique.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime

from ..errors import InvalidRequest

GENERATED = "generated"
UPLOADS = "uploads"
NAMESPACES: tuple[str, ...] = (GENERATED, UPLOADS)

#: How long a file without a row (or a temporary file) is left alone by gc.
ORPHAN_GRACE_SECONDS = 3600.0
#: How long a presigned download URL stays valid (the API documents it).
PRESIGN_SECONDS = 300

MAX_SAFE_NAME = 100
MAX_ORIGINAL_NAME = 255
MAX_CONTENT_TYPE = 255

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_SAFE_NAME = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_SAFE_NAME - 1}}}"
OBJECT_NAME = re.compile(rf"{_UUID}-{_SAFE_NAME}")
OBJECT_KEY = re.compile(
    rf"{_UUID}/(?:{'|'.join(NAMESPACES)})/\d{{4}}/\d{{2}}/\d{{2}}/{_UUID}-{_SAFE_NAME}"
)
COMPANY_ID = re.compile(_UUID)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTTED_RUN = re.compile(r"[._-]*\.[._-]*")
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,16}")
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(?:[ \t]*;[\x20-\x7e]*)?"
)


# --- object keys -----------------------------------------------------------------------


def new_object_key(company_id: object, namespace: str, filename: str, now: datetime) -> str:
    """A key no object has had: `<company id>/<namespace>/<yyyy>/<mm>/<dd>/<uuid>-<safe
    name>`, dated `now` in UTC. `namespace` and `filename` are the caller's, checked."""
    if not isinstance(company_id, str) or not COMPANY_ID.fullmatch(company_id):
        raise InvalidRequest(f"company id must be a uuid, got {company_id!r}")
    when = now.astimezone(UTC)
    return f"{company_id}/{namespace}/{when:%Y/%m/%d}/{uuid.uuid4()}-{safe_filename(filename)}"


def check_object_key(object_key: object) -> str:
    """Only keys of the layout reach a backend: a key from anywhere else (a damaged
    row) can never name a path outside the storage root or a foreign object."""
    if not isinstance(object_key, str) or not OBJECT_KEY.fullmatch(object_key):
        raise ValueError(f"not an object key of this storage: {object_key!r}")
    return object_key


# --- names -----------------------------------------------------------------------------


def _keep_extension(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, keeping a short extension when it has one."""
    if len(text) <= limit:
        return text
    stem, dot, ext = text.rpartition(".")
    if dot and stem and len(ext) <= 16:
        return stem[: limit - len(ext) - 1] + "." + ext
    return text[:limit]


def safe_filename(name: str) -> str:
    """A name that is safe as one path component on any filesystem: ASCII letters,
    digits and `._-` only, no path separators, no `..`, no leading dot or dash, at most
    MAX_SAFE_NAME characters, a short extension kept. `../../etc/passwd` becomes
    `etc_passwd`, `résumé.pdf` `resume.pdf`, a name with nothing usable `file`."""
    # Accents come off (é -> e) rather than turning the name into underscores.
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    stem, dot, ext = text.rpartition(".")
    if not dot or not _EXTENSION.fullmatch(ext):
        stem, ext = text, ""

    def squash(part: str) -> str:
        part = _UNSAFE.sub("_", part)
        part = _DOTTED_RUN.sub(".", part)  # any run holding a dot is one dot: no ".."
        return re.sub(r"_{2,}", "_", part).strip("._-")

    stem = squash(stem)
    limit = MAX_SAFE_NAME - (len(ext) + 1 if ext else 0)
    stem = stem[:limit].rstrip("._-") or "file"
    return f"{stem}.{ext}" if ext else stem


def clean_original(name: str) -> str:
    """The name as the row keeps it: control characters removed (NUL cannot be stored
    in PostgreSQL text), text that is not valid UTF-8 replaced, at most
    MAX_ORIGINAL_NAME characters (a filesystem's own limit) with its extension kept."""
    text = name.encode("utf-8", "replace").decode("utf-8")
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc")
    return _keep_extension(text, MAX_ORIGINAL_NAME)


def check_filename(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidRequest(f"filename must be a string, not {type(name).__name__}")
    return name


def check_content_type(value: object) -> str:
    """A media type such as `image/svg+xml` or `text/plain; charset=utf-8`; no control
    characters (it becomes a response header)."""
    if (
        not isinstance(value, str)
        or len(value) > MAX_CONTENT_TYPE
        or not _MEDIA_TYPE.fullmatch(value.strip())
    ):
        raise InvalidRequest(
            f"content type must be a media type such as application/octet-stream, got {value!r}"
        )
    return value.strip()
