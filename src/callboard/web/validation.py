"""Request bodies and query strings, checked strictly: unknown fields and wrong types
are refused with a message naming the field (400), before anything is written."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..jobs import (
    MAX_ATTEMPTS,
    MAX_NAME,
    MAX_PRIORITY,
    MAX_REFERENCE,
    MAX_SECONDS,
    NAME_PATTERN,
    REFERENCE_PATTERN,
    SCHEDULE_FIELDS,
    SUBMIT_OPTIONS,
    JobSpec,
    is_reference,
)
from .errors import ApiError, bad_request

MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 1000
#: Event ids are 64-bit signed integers in every store.
MAX_LAST_EVENT_ID = 2**63 - 1


def body_too_large() -> ApiError:
    return ApiError(
        413, "too_large", f"the body is larger than the {MAX_BODY_BYTES} bytes (1 MiB) limit"
    )


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    except ValueError as exc:
        # Python refuses integers of more than 4,300 digits (a guard against slow
        # conversions): no field takes one.
        raise bad_request(f"the body holds a number too long to read: {exc}") from None
    except RecursionError:
        # A few hundred thousand "[" fit in 1 MiB and overflow the decoder's stack.
        raise bad_request("the body is nested too deeply") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def require_object(body: Any, what: str = "the body") -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"{what} must be a JSON object")
    return body


def check_fields(body: Mapping[str, Any], allowed: set[str], where: str = "") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(
            f"{where}unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


@dataclass(frozen=True, slots=True)
class OptionRule:
    """How the wire form of one submit option is checked, and how the OpenAPI document
    describes it (the two are one table, so the document states what is enforced; the
    bounds themselves are `callboard.jobs`', which the Python API checks too)."""

    ok: Callable[[Any], bool]
    expected: str
    schema: Mapping[str, Any]


def integral(value: Any) -> Any:
    """JSON has one number type: `2.0` is the integer 2 (as JSON Schema reads it)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _int_in(low: int, high: int) -> OptionRule:
    return OptionRule(
        lambda v: _is_int(v) and low <= v <= high,
        f"an integer from {low} to {high}",
        {"type": "integer", "minimum": low, "maximum": high},
    )


#: A caller's own reference: what `jobs.is_reference` accepts.
REFERENCE_SCHEMA: Mapping[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_REFERENCE,
    "pattern": REFERENCE_PATTERN,
}


def _reference() -> OptionRule:
    return OptionRule(
        is_reference,
        f"a string of 1 to {MAX_REFERENCE} characters of text, without NUL",
        REFERENCE_SCHEMA,
    )


#: Keyed by the options' Python names (`callboard.jobs.SUBMIT_OPTIONS`).
OPTION_RULES: Mapping[str, OptionRule] = {
    "source_task_id": _reference(),
    "priority": _int_in(-MAX_PRIORITY, MAX_PRIORITY),
    "delay": OptionRule(
        lambda v: _is_number(v) and 0 <= v <= MAX_SECONDS,
        f"a number of seconds from 0 to {MAX_SECONDS} (ten years)",
        {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
    ),
    "max_attempts": _int_in(1, MAX_ATTEMPTS),
    "timeout": OptionRule(
        lambda v: _is_number(v) and 0 < v <= MAX_SECONDS,
        f"a number of seconds above 0 to {MAX_SECONDS} (ten years)",
        {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS},
    ),
    "idempotency_key": _reference(),
}

_JOB_FIELDS = {"jobType", "input", *SUBMIT_OPTIONS.values()}


def option_schemas() -> dict[str, Any]:
    """The OpenAPI properties of the submit options, by wire name. Each may be null,
    which means the same as leaving it out (the default)."""
    return {
        wire: {**OPTION_RULES[name].schema, "type": [OPTION_RULES[name].schema["type"], "null"]}
        for name, wire in SUBMIT_OPTIONS.items()
    }


def job_spec(body: Any, where: str = "") -> JobSpec:
    """A JobSpec from one job's JSON; `where` prefixes messages (e.g. "jobs[3]: ")."""
    body = require_object(body, f"{where or 'the body'}".rstrip(": "))
    check_fields(body, _JOB_FIELDS, where)
    job_type = body.get("jobType")
    if not isinstance(job_type, str) or not job_type:
        raise bad_request(f"{where}jobType is required and must be a non-empty string")
    input_ = body.get("input", {})
    if not isinstance(input_, dict):
        raise bad_request(f"{where}input must be a JSON object")

    options: dict[str, Any] = {}
    for name, wire in SUBMIT_OPTIONS.items():
        value = body.get(wire)
        if value is None:
            continue
        rule = OPTION_RULES[name]
        value = integral(value)
        if not rule.ok(value):
            raise bad_request(f"{where}{wire} must be {rule.expected}")
        options[name] = value
    return JobSpec(job_type, input_, **options)


def batch_specs(body: Any) -> list[JobSpec]:
    body = require_object(body)
    check_fields(body, {"jobs"})
    jobs = body.get("jobs")
    if not isinstance(jobs, list):
        raise bad_request("jobs is required and must be an array of jobs")
    if not 1 <= len(jobs) <= MAX_BATCH:
        raise bad_request(f"a batch holds 1 to {MAX_BATCH} jobs, got {len(jobs)}")
    return [job_spec(job, f"jobs[{i}]: ") for i, job in enumerate(jobs)]


def query_int(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}")
    return value


def query_bool(args: Mapping[str, str], name: str, default: bool) -> bool:
    """`true` or `false` exactly (absent: `default`): anything else is refused, so a
    misspelt value never silently means the default."""
    raw = args.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise bad_request(f"{name} must be true or false, got {raw[:40]!r}")
    return raw == "true"


def check_query(args: Mapping[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise bad_request(
            f"unknown query parameter(s): {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


# --- schedules ------------------------------------------------------------------------


def _schedule_rules() -> dict[str, OptionRule]:
    """How each field of a schedule's body is checked, by wire name: its type here (and
    in the OpenAPI document); its meaning (a valid cron expression, a known timezone,
    the bounds) by `RunningBoard.create_schedule`, which the Python API shares."""
    text = OptionRule(lambda v: isinstance(v, str), "a string", {"type": "string", "minLength": 1})
    return {
        "name": OptionRule(
            lambda v: isinstance(v, str),
            "a string",
            {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN},
        ),
        "jobType": OptionRule(
            lambda v: isinstance(v, str) and v != "", "a non-empty string", {"type": "string"}
        ),
        "input": OptionRule(lambda v: isinstance(v, dict), "a JSON object", {"type": "object"}),
        "cron": OptionRule(
            lambda v: isinstance(v, str),
            "a cron expression of 5 fields",
            {"type": "string", "maxLength": 200, "examples": ["30 2 * * *"]},
        ),
        "every": OptionRule(
            lambda v: _is_number(v) and 1 <= v <= MAX_SECONDS,
            f"a number of seconds from 1 to {MAX_SECONDS} (ten years)",
            {"type": "number", "minimum": 1, "maximum": MAX_SECONDS},
        ),
        "timezone": text,
        "priority": OPTION_RULES["priority"],
        "maxAttempts": OPTION_RULES["max_attempts"],
        "timeoutSeconds": OPTION_RULES["timeout"],
        "catchUp": OptionRule(
            lambda v: v in ("skip", "once"),
            "'skip' or 'once'",
            {"type": "string", "enum": ["skip", "once"]},
        ),
        "paused": OptionRule(lambda v: isinstance(v, bool), "true or false", {"type": "boolean"}),
    }


SCHEDULE_RULES: Mapping[str, OptionRule] = _schedule_rules()
#: Fields that may be null in a PATCH (null clears them: they go back to the handler's).
#: cron and every are never null: giving one drops the other.
SCHEDULE_NULLABLE = frozenset({"maxAttempts", "timeoutSeconds"})


def schedule_changes(body: Any, *, new: bool) -> dict[str, Any]:
    """The Python keywords (`jobs.SCHEDULE_FIELDS`) of a schedule's POST (`new`) or
    PATCH body; types checked here, meaning by the running board."""
    body = require_object(body)
    wire_to_python = {wire: name for name, wire in SCHEDULE_FIELDS.items()}
    check_fields(body, set(wire_to_python))
    if new:
        for required in ("name", "jobType"):
            if body.get(required) is None:
                raise bad_request(f"{required} is required")
    elif not body:
        raise bad_request(f"give at least one field to change: {', '.join(sorted(wire_to_python))}")
    changes: dict[str, Any] = {}
    for wire, value in body.items():
        if value is None:
            if new:
                continue  # as if left out: the default
            if wire not in SCHEDULE_NULLABLE:
                raise bad_request(f"{wire} cannot be null")
            changes[wire_to_python[wire]] = None
            continue
        rule = SCHEDULE_RULES[wire]
        value = integral(value)
        if not rule.ok(value):
            raise bad_request(f"{wire} must be {rule.expected}")
        changes[wire_to_python[wire]] = value
    return changes


def schedule_schemas() -> dict[str, Any]:
    """The OpenAPI properties of a schedule's body, by wire name."""
    return {
        wire: (
            {**rule.schema, "type": [rule.schema["type"], "null"]}
            if wire in SCHEDULE_NULLABLE
            else dict(rule.schema)
        )
        for wire, rule in SCHEDULE_RULES.items()
    }
