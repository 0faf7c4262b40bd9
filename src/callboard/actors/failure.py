"""What a failed attempt records about the exception that ended it: a message that
reads on its own, the exception's type, and its traceback, bounded (README, "When a
job fails")."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from ..jobs import MAX_TRACEBACK_BYTES, storable_text


@dataclass(frozen=True, slots=True)
class Failure:
    message: str
    type: str | None = None
    traceback: str | None = None


def failure_of(exc: BaseException) -> Failure:
    return Failure(describe_error(exc), type_name(exc), format_traceback(exc))


def describe_error(exc: BaseException) -> str:
    """A message for a failed attempt: the exception's own message; its type alone when
    it has none; its type first when the message is only the repr of its one argument
    (`KeyError('topic')` says `'topic'`, which reads as nothing: "KeyError: 'topic'"),
    as the last line of a traceback says it. The leaves of an exception group joined."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe_error(e) for e in exc.exceptions)
    text = str(exc).strip()
    name = type(exc).__name__
    if not text:
        return name
    if len(exc.args) == 1 and text == repr(exc.args[0]).strip():
        return f"{name}: {text}"
    return text


def type_name(exc: BaseException) -> str:
    """A built-in's bare name ("KeyError"), anything else's qualified by its module
    ("mymodule.MyError"), so a handler's own exception is told from a built-in one."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def format_traceback(exc: BaseException) -> str:
    """The traceback as Python prints it (chained exceptions and groups included),
    bounded by `bounded_traceback`."""
    return bounded_traceback("".join(traceback.format_exception(exc)))


def bounded_traceback(text: str, limit: int = MAX_TRACEBACK_BYTES) -> str:
    """`text` made storable (`storable_text`) and, when longer than `limit` bytes of
    UTF-8, its tail from a line start after a first line saying how much was cut: the
    frames nearest the raise and the exception's own line are the ones that explain
    it, and a deep recursion or a huge message must not make every event that big."""
    text = storable_text(text) or ""
    data = text.encode()
    if len(data) <= limit:
        return text
    marker = "[... {} bytes cut]\n"
    # The count has at most as many digits as the whole length.
    room = limit - len(marker.format(len(data)).encode())
    tail = data[len(data) - room :].decode(errors="ignore")  # a cut character goes
    newline = tail.find("\n")
    if 0 <= newline < len(tail) - 1:
        tail = tail[newline + 1 :]
    return marker.format(len(data) - len(tail.encode())) + tail
