"""The OpenAPI 3.1 description of every route, written by hand (a test checks it
against the app's URL map, so a new route cannot go undocumented)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..jobs import CURSOR_PATTERN, MAX_COMPANY_RUNNING, MAX_NAME, NAME_PATTERN, JobStatus
from ..storage.names import PRESIGN_SECONDS
from .validation import MAX_LAST_EVENT_ID, REFERENCE_SCHEMA, option_schemas, schedule_schemas

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "malformed JSON, wrong types, unknown fields or bad parameters",
        401: "no, bad or revoked token",
        403: "a company token on an operator route",
        404: "unknown id, or another company's",
        409: "wrong state",
        413: "body too large, or a file over its namespace's cap (the message names it)",
        416: "range not satisfiable",
        422: "unknown job type (the message lists the known ones)",
        507: "asset storage is out of space; nothing was kept",
        503: "the job store or asset storage is unavailable, or the node is shutting down",
    }
    return {str(c): _json(_ERROR, text[c]) for c in codes}


#: A submit's 503: the store, a stopping node, or backpressure (web/backlog.py).
_BUSY = {
    **_json(
        _ERROR,
        "store unavailable, shutting down, or the queue holds more due jobs than "
        "CALLBOARD_MAX_QUEUED (code queue_full): nothing was written, retry later",
    ),
    "headers": {
        "Retry-After": {
            "description": "seconds to wait before retrying (on queue_full)",
            "schema": {"type": "string"},
        }
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "nextCursor"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "nextCursor": {"type": ["string", "null"]},
        },
    }


def _param(name: str, where: str, schema: dict[str, Any], description: str = "") -> dict:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


_C = _param("companyId", "path", {"type": "string", "format": "uuid"}, "the company's id")
#: A company's cap on its running jobs; null: no cap.
_MAX_RUNNING = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_COMPANY_RUNNING}
_STATS = {
    "type": "object",
    "properties": {
        "companies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "name", "running", "queued", "maxRunning"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "name": {"type": "string"},
                    "running": {"type": "integer", "minimum": 0},
                    "queued": {"type": "integer", "minimum": 0},
                    "maxRunning": _MAX_RUNNING,
                },
            },
        }
    },
}
_J = _param("jobId", "path", {"type": "string", "format": "uuid"}, "the job's id")
_T = _param("tokenId", "path", {"type": "string", "format": "uuid"}, "the token's id")
_A = _param("assetId", "path", {"type": "string", "format": "uuid"}, "the asset's id")
_EVENT_ID = {"type": "integer", "minimum": 0, "maximum": MAX_LAST_EVENT_ID}
# The token of an EventSource, which cannot set headers, is a security scheme of its
# own (`queryToken`), not a parameter: a request with neither it nor the header is 401.
# Request headers are described in prose, not declared: a declared header set reads as
# closed to schema-driven clients and fuzzers, which then expect any other header (a
# proxy's, a browser's) to be refused.
_SSE_PARAMS = [
    _param(
        "lastEventId",
        "query",
        _EVENT_ID,
        "resume after this id; the `Last-Event-ID` header (same bounds), which a "
        "reconnecting EventSource sends, wins over it",
    ),
]
#: One event of a stream, as an SSE parser reads it (OpenAPI 3.1: `schema` of an event
#: stream describes each event).
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]*$"},
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
_SSE = {
    "description": "text/event-stream: `retry:` first, `: ping` every 15 s; "
    "each event has `id:` (job events), `event:` and JSON `data:`",
    "content": {"text/event-stream": {"schema": _SSE_EVENT}},
}
_CURSOR = {"type": "string", "pattern": CURSOR_PATTERN}
_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    params: Sequence[dict[str, Any]] = (),
    body: dict[str, Any] | None = None,
    body_type: str = "application/json",
    body_required: bool = True,
    secured: bool = True,
    query_token: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        media: dict[str, Any] = {"schema": body}
        if body_type == "multipart/form-data":
            # Every part is bytes: say so, so that a client (and a fuzzer) sends them
            # as a file and not as a JSON value written out as text.
            media["encoding"] = {
                name: {"contentType": "application/octet-stream"} for name in body["properties"]
            }
        op["requestBody"] = {"required": body_required, "content": {body_type: media}}
    if not secured:
        op["security"] = []
    elif query_token:
        op["security"] = [{"bearer": []}, {"queryToken": []}]
    return op


def openapi_document(job_types: list[str]) -> dict[str, Any]:
    job_body = {
        "type": "object",
        "additionalProperties": False,
        "required": ["jobType"],
        "properties": {
            "jobType": {"type": "string", "enum": job_types},
            "input": {"type": "object"},
            **option_schemas(),
        },
    }
    accepted = {
        "type": "object",
        "required": ["jobId", "status", "createdAt"],
        "properties": {
            "jobId": {"type": "string", "format": "uuid"},
            "status": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
        },
    }
    statuses = [s.value for s in JobStatus]
    filter_params = [
        {
            **_param(
                "status",
                "query",
                {"type": "array", "items": {"type": "string", "enum": statuses}},
                "any of these statuses: repeat it (?status=queued&status=running); "
                "comma-separated values (?status=queued,running) are read the same",
            ),
            "style": "form",
            "explode": True,
        },
        _param("jobType", "query", {"type": "string"}),
        _param("sourceTaskId", "query", {"type": "string"}),
        _param(
            "createdAfter",
            "query",
            {"type": "string", "format": "date-time"},
            "only jobs created at or after this time (ISO 8601; no zone: UTC)",
        ),
        _param(
            "createdBefore",
            "query",
            {"type": "string", "format": "date-time"},
            "only jobs created before this time (ISO 8601; no zone: UTC)",
        ),
        _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        _param("cursor", "query", _CURSOR, "the nextCursor of the page before"),
    ]
    list_params = [_C, *filter_params]
    bulk_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "status": {
                "oneOf": [
                    {"type": "null"},
                    {"type": "string", "enum": statuses},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "enum": statuses},
                    },
                ],
                "description": "any of these statuses (default: every status the action "
                "applies to); matching jobs of other statuses are counted as skipped",
            },
            "jobType": {"type": ["string", "null"], "minLength": 1},
            "createdAfter": {"type": ["string", "null"], "format": "date-time"},
            "createdBefore": {"type": ["string", "null"], "format": "date-time"},
            "dryRun": {"type": "boolean", "default": False},
        },
    }
    bulk_answer = {"200": _json(_ref("BulkReport"), "what matched, what was done, skipped")}
    label_body = {
        "type": "object",
        "additionalProperties": False,
        "required": ["label"],
        "properties": {"label": _NAME},
    }
    paths: dict[str, Any] = {
        "/api/companies": {
            "post": _op(
                "Create a company (operator)",
                {"201": _json(_ref("Company"), "the company"), **_errors(400, 401, 403, 409)},
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": _NAME},
                },
            ),
            "get": _op(
                "The companies the token can see",
                {"200": _json(_page("Company"), "companies"), **_errors(401)},
            ),
        },
        "/api/companies/{companyId}": {
            "get": _op(
                "A company, with its cap on running jobs (`maxRunning`)",
                {"200": _json(_ref("Company"), "the company"), **_errors(401, 404)},
                params=[_C],
            ),
            "patch": _op(
                "Cap the company's running jobs on every node together, or lift the cap "
                "with null (operator). Jobs already running finish; claims start no more "
                "of its jobs while it is at the cap",
                {"200": _json(_ref("Company"), "the company"), **_errors(400, 401, 403, 404)},
                params=[_C],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["maxRunning"],
                    "properties": {"maxRunning": _MAX_RUNNING},
                },
            ),
        },
        "/api/companies/{companyId}/tokens": {
            "post": _op(
                "Create a company token (operator); the secret is shown only here",
                {"201": _json(_ref("NewToken"), "the token"), **_errors(400, 401, 403, 404)},
                params=[_C],
                body=label_body,
            ),
            "get": _op(
                "A company's tokens, without secrets (operator)",
                {"200": _json(_page("Token"), "tokens"), **_errors(401, 403, 404)},
                params=[_C],
            ),
        },
        "/api/companies/{companyId}/tokens/{tokenId}": {
            "delete": _op(
                "Revoke a token (operator)",
                {"204": {"description": "revoked"}, **_errors(401, 403, 404)},
                params=[_C, _T],
            ),
        },
        "/api/companies/{companyId}/content-jobs": {
            "post": _op(
                "Submit a job; answers at once",
                {
                    "202": _json(accepted, "queued"),
                    **_errors(400, 401, 404, 413, 422),
                    "503": _BUSY,
                },
                params=[_C],
                body=job_body,
            ),
            "get": _op(
                "A page of jobs, newest first",
                {"200": _json(_page("Job"), "jobs"), **_errors(400, 401, 404)},
                params=list_params,
            ),
        },
        "/api/companies/{companyId}/content-jobs/batch": {
            "post": _op(
                "Submit 1 to 1,000 jobs in one transaction (all or none)",
                {
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {"jobs": {"type": "array", "items": accepted}},
                        },
                        "queued",
                    ),
                    **_errors(400, 401, 404, 413, 422),
                    "503": _BUSY,
                },
                params=[_C],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["jobs"],
                    "properties": {
                        "jobs": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 1000,
                            "items": job_body,
                        }
                    },
                },
            ),
        },
        "/api/content-jobs": {
            "get": _op(
                "A page of every company's jobs, newest first (operator)",
                {"200": _json(_page("Job"), "jobs"), **_errors(400, 401, 403)},
                params=filter_params,
            ),
        },
        "/api/companies/{companyId}/content-jobs/bulk-retry": {
            "post": _op(
                "Retry every failed or cancelled job of the company the filter matches, "
                "a page at a time; dryRun only counts",
                {**bulk_answer, **_errors(400, 401, 404)},
                params=[_C],
                body=bulk_body,
                body_required=False,
            ),
        },
        "/api/companies/{companyId}/content-jobs/bulk-cancel": {
            "post": _op(
                "Cancel every queued or running job of the company the filter matches "
                "(running ones are asked to stop); dryRun only counts",
                {**bulk_answer, **_errors(400, 401, 404)},
                params=[_C],
                body=bulk_body,
                body_required=False,
            ),
        },
        "/api/content-jobs/bulk-retry": {
            "post": _op(
                "Retry every failed or cancelled job of every company the filter matches "
                "(operator); dryRun only counts",
                {**bulk_answer, **_errors(400, 401, 403)},
                body=bulk_body,
                body_required=False,
            ),
        },
        "/api/content-jobs/bulk-cancel": {
            "post": _op(
                "Cancel every queued or running job of every company the filter matches "
                "(operator); dryRun only counts",
                {**bulk_answer, **_errors(400, 401, 403)},
                body=bulk_body,
                body_required=False,
            ),
        },
        "/api/content-jobs/prune": {
            "post": _op(
                "Delete the jobs that finished (done, failed, cancelled) more than "
                "olderThanSeconds ago, with their events; their assets stay (operator). "
                "The node does this by itself past CALLBOARD_JOB_RETENTION",
                {
                    "200": _json(_ref("PruneReport"), "how many matched and were deleted"),
                    **_errors(400, 401, 403),
                },
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["olderThanSeconds"],
                    "properties": {
                        "olderThanSeconds": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 100 * 365 * 86400,
                        },
                        "dryRun": {"type": "boolean", "default": False},
                    },
                },
            ),
        },
        "/api/companies/{companyId}/content-jobs/{jobId}": {
            "get": _op(
                "One job",
                {"200": _json(_ref("Job"), "the job"), **_errors(401, 404)},
                params=[_C, _J],
            ),
        },
        "/api/content-jobs/{jobId}": {
            "get": _op(
                "One job by id alone (same access rules)",
                {"200": _json(_ref("Job"), "the job"), **_errors(401, 404)},
                params=[_J],
            ),
        },
        "/api/companies/{companyId}/content-jobs/{jobId}/cancel": {
            "post": _op(
                "Cancel a job",
                {"202": _json(_ref("Job"), "the job"), **_errors(401, 404, 409)},
                params=[_C, _J],
            ),
        },
        "/api/companies/{companyId}/content-jobs/{jobId}/retry": {
            "post": _op(
                "Queue a failed or cancelled job again",
                {"202": _json(_ref("Job"), "the job"), **_errors(401, 404, 409)},
                params=[_C, _J],
            ),
        },
        "/api/companies/{companyId}/content-jobs/{jobId}/events": {
            "get": _op(
                "SSE for one job: its latest event (or a replay after Last-Event-ID), then "
                "live, ending after a terminal event; 204 for a finished job's reconnect",
                {"200": _SSE, "204": {"description": "finished"}, **_errors(400, 401, 404)},
                params=[_C, _J, *_SSE_PARAMS],
                query_token=True,
            ),
        },
        "/api/companies/{companyId}/events": {
            "get": _op(
                "SSE: every job event of a company",
                {"200": _SSE, **_errors(400, 401, 404)},
                params=[_C, *_SSE_PARAMS],
                query_token=True,
            ),
        },
        "/api/events": {
            "get": _op(
                "SSE (operator): every company, plus worker.* and runtime.stats",
                {"200": _SSE, **_errors(400, 401, 403)},
                params=list(_SSE_PARAMS),
                query_token=True,
            ),
        },
        **_asset_paths(),
        **_schedule_paths(job_types),
        "/api/gc": {
            "post": _op(
                "Delete asset files no row refers to, older than an hour (operator); "
                "`callboard gc` calls this, as the embedded store is locked to the server",
                {
                    "200": _json(_ref("GcReport"), "what was found and deleted"),
                    **_errors(400, 401, 403),
                },
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"dryRun": {"type": "boolean", "default": False}},
                },
                body_required=False,
            ),
        },
        "/api/stats": {
            "get": _op(
                "Counts by status, each company's running and queued jobs (every "
                "node's) with its cap, workers, throughput (operator)",
                {"200": _json(_STATS, "stats"), **_errors(401, 403)},
            ),
        },
        "/api/job-types": {
            "get": _op(
                "Every job type this node accepts and runs, by name: its defaults per job "
                "(a submit may override timeoutSeconds and maxAttempts), its cap per node, "
                "and whether it is built in (any token); the demo.* types only on a node "
                "started with --demo-types",
                {"200": _json(_page("JobType"), "job types"), **_errors(401)},
            ),
        },
        "/api/nodes": {
            "get": _op(
                "The nodes on this node's store seen in the last 15 s, this one included, "
                "earliest started first (operator)",
                {"200": _json(_page("Node"), "live nodes"), **_errors(401, 403)},
            ),
        },
        "/healthz": {
            "get": _op("Liveness", {"200": _json({"type": "object"}, "alive")}, secured=False)
        },
        "/readyz": {
            "get": _op(
                "Readiness: runtime running, store reachable, asset storage writable (a "
                "bucket's answer is kept for 5 s); `warnings` never make a node unready",
                {
                    "200": _json(_ref("Readiness"), "ready"),
                    "503": _json(_ref("Readiness"), "not ready: a check is false"),
                },
                secured=False,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "text",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                secured=False,
            )
        },
        "/openapi.json": {
            "get": _op(
                "This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")}, secured=False
            )
        },
    }
    nullable_str = {"type": ["string", "null"]}
    schemas = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        "Company": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "name": {"type": "string"},
                "createdAt": {"type": "string", "format": "date-time"},
                "maxRunning": _MAX_RUNNING,
            },
        },
        "Token": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "companyId": nullable_str,
                "label": {"type": "string"},
                "createdAt": {"type": "string", "format": "date-time"},
                "revokedAt": nullable_str,
            },
        },
        "NewToken": {
            "allOf": [
                _ref("Token"),
                {"type": "object", "properties": {"token": {"type": "string"}}},
            ]
        },
        "Job": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "companyId": {"type": "string", "format": "uuid"},
                "jobType": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in JobStatus]},
                "priority": {"type": "integer"},
                "input": {"type": "object"},
                "progress": {
                    "type": "object",
                    "properties": {
                        "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                        "message": nullable_str,
                    },
                },
                "attempt": {"type": "integer"},
                "maxAttempts": {"type": "integer"},
                "timeoutSeconds": {"type": ["number", "null"]},
                "runAt": {"type": "string", "format": "date-time"},
                "resultAssetId": nullable_str,
                "result": {
                    "description": (
                        "What the handler returned: any JSON value, at most "
                        "CALLBOARD_RESULT_MAX_BYTES (1 MiB by default) as compact JSON. "
                        "Set when the job is done; null before, for a handler that "
                        "returned nothing, and for a job that failed or was cancelled."
                    ),
                },
                "errorMessage": {
                    "type": ["string", "null"],
                    "description": (
                        'Why the last attempt failed ("cancelled" for a cancelled job); '
                        "an exception whose message is only the repr of its argument "
                        "reads with its type first (\"KeyError: 'topic'\")."
                    ),
                },
                "errorType": {
                    "type": ["string", "null"],
                    "description": (
                        "What failed the last attempt: the exception's type, bare for a "
                        'Python built-in ("KeyError") and module-qualified otherwise '
                        '("mymodule.MyError"); or callboard\'s own ending: "Timeout", '
                        '"WorkerLost" (the reaper took the job back), "InvalidResult" '
                        "(the handler returned no JSON, or too much). Null when nothing "
                        "failed, and for a cancelled job."
                    ),
                },
                "errorTraceback": {
                    "type": ["string", "null"],
                    "description": (
                        "The last failed attempt's traceback as Python prints it, at most "
                        "16 KiB of UTF-8: a longer one keeps its tail, after a first line "
                        "saying how many bytes were cut. Null when no exception failed "
                        "the attempt."
                    ),
                },
                "sourceTaskId": nullable_str,
                "idempotencyKey": nullable_str,
                "createdAt": {"type": "string", "format": "date-time"},
                "startedAt": nullable_str,
                "finishedAt": nullable_str,
                "updatedAt": {"type": "string", "format": "date-time"},
                "scheduleId": {
                    "type": ["string", "null"],
                    "description": "the schedule that made the job",
                },
                "scheduledFor": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "the tick of its schedule the job was made for",
                },
            },
        },
        "Schedule": _SCHEDULE_SCHEMA,
        "JobType": {
            "type": "object",
            "required": ["jobType", "timeoutSeconds", "maxAttempts", "concurrency", "builtIn"],
            "properties": {
                "jobType": {"type": "string"},
                "timeoutSeconds": {
                    "type": ["number", "null"],
                    "description": "each attempt's timeout unless a submit gives one; null: none",
                },
                "maxAttempts": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "attempts per job unless a submit gives a number",
                },
                "concurrency": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "description": "at most this many run at once on one node; null: no cap",
                },
                "builtIn": {
                    "type": "boolean",
                    "description": "callboard's own (noop, demo.*), not a handler module's",
                },
            },
        },
    }
    schemas.update(_ASSET_SCHEMAS)
    schemas.update(_NODE_SCHEMAS)
    _name_and_link(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "callboard", "version": "0.1.0", "description": "A job runtime for trio"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "queryToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "the bearer token, for EventSource (never logged)",
                },
            },
        },
        "security": [{"bearer": []}],
    }


def _asset_paths() -> dict[str, Any]:
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    download = {
        "description": "the bytes, streamed, with Content-Length, ETag (the sha256), "
        "Content-Disposition (the original name) and Accept-Ranges",
        "content": {"application/octet-stream": {"schema": binary}},
    }
    return {
        "/api/companies/{companyId}/assets": {
            "post": _op(
                "Upload one file (multipart/form-data, field `file`) into `uploads`; "
                "streamed, refused with 413 over CALLBOARD_ATTACHMENT_MAX_BYTES",
                {
                    "201": _json(_ref("Asset"), "the asset"),
                    **_errors(400, 401, 404, 413, 503, 507),
                },
                params=[
                    _C,
                    _param("sourceTaskId", "query", dict(REFERENCE_SCHEMA), "link to a task"),
                ],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["file"],
                    "properties": {"file": binary},
                },
                body_type="multipart/form-data",
            ),
            "get": _op(
                "A page of assets, newest first",
                {"200": _json(_page("Asset"), "assets"), **_errors(400, 401, 404)},
                params=[
                    _C,
                    _param("sourceTaskId", "query", {"type": "string"}),
                    _param("jobId", "query", {"type": "string"}, "assets a job created"),
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    ),
                    _param("cursor", "query", _CURSOR, "the nextCursor of the page before"),
                ],
            ),
        },
        "/api/companies/{companyId}/assets/{assetId}": {
            "get": _op(
                "One asset's metadata",
                {"200": _json(_ref("Asset"), "the asset"), **_errors(401, 404)},
                params=[_C, _A],
            ),
        },
        "/api/companies/{companyId}/assets/{assetId}/content": {
            "get": _op(
                "The asset's bytes. Request headers: `Range` (one range, e.g. bytes=0-99) "
                "gives 206 or 416, `If-None-Match` with the ETag gives 304, `If-Range` "
                "makes the Range conditional. With `redirect=true` on S3 storage: a 307 "
                "to the object store instead",
                {
                    "200": download,
                    "206": {**download, "description": "the range asked for, with Content-Range"},
                    "304": {"description": "not modified (If-None-Match)"},
                    "307": {
                        "description": "`redirect=true` on S3 storage: download from the "
                        f"object store at `Location`, a URL valid for {PRESIGN_SECONDS // 60} "
                        "minutes that needs no token (keep it secret); the store's ETag is "
                        "its own, not the sha256",
                        "headers": {
                            "Location": {
                                "description": "the presigned URL",
                                "schema": {"type": "string", "format": "uri"},
                            },
                            "Cache-Control": {
                                "description": "no-store",
                                "schema": {"type": "string"},
                            },
                        },
                    },
                    **_errors(400, 401, 404, 416, 503),
                },
                params=[
                    _C,
                    _A,
                    _param(
                        "redirect",
                        "query",
                        {"type": "boolean", "default": False},
                        "true: answer 307 to a short-lived URL of the object store, so the "
                        "bytes skip this node (S3 storage only; file:// storage serves them "
                        "as usual; HEAD is always answered here)",
                    ),
                ],
            ),
        },
    }


_NULLABLE = {"type": ["string", "null"]}
_ASSET_SCHEMAS: dict[str, Any] = {
    "Asset": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "companyId": {"type": "string", "format": "uuid"},
            "namespace": {"type": "string", "enum": ["generated", "uploads"]},
            "objectKey": {"type": "string"},
            "contentType": {"type": "string"},
            "byteSize": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string"},
            "originalFilename": {"type": "string"},
            "sourceTaskId": _NULLABLE,
            "createdByJobId": _NULLABLE,
            "createdAt": {"type": "string", "format": "date-time"},
        },
    },
    "GcReport": {
        "type": "object",
        "properties": {
            "dryRun": {"type": "boolean"},
            "olderThanSeconds": {"type": "number"},
            "scannedFiles": {"type": "integer"},
            "referencedFiles": {"type": "integer"},
            "tooYoungFiles": {"type": "integer"},
            "deletedFiles": {"type": "integer"},
            "deletedBytes": {"type": "integer"},
            "deleted": {"type": "array", "items": {"type": "string"}},
            "deletedListTruncated": {"type": "boolean"},
            "failedFiles": {"type": "integer"},
        },
    },
    "BulkReport": {
        "type": "object",
        "required": [
            "action",
            "dryRun",
            "matched",
            "eligible",
            "applied",
            "stopping",
            "changed",
            "skipped",
        ],
        "properties": {
            "action": {"type": "string", "enum": ["retry", "cancel"]},
            "dryRun": {"type": "boolean"},
            "matched": {"type": "integer", "description": "jobs the filter matches"},
            "eligible": {
                "type": "integer",
                "description": "of those, in a status the action applies to (retry: failed, "
                "cancelled; cancel: queued, running)",
            },
            "applied": {"type": "integer", "description": "acted on (0 in a dry run)"},
            "stopping": {"type": "integer", "description": "cancel: running, asked to stop"},
            "changed": {
                "type": "integer",
                "description": "eligible when counted, changed before their turn",
            },
            "skipped": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "matched jobs the action does not apply to, by status",
            },
        },
    },
    "PruneReport": {
        "type": "object",
        "required": ["dryRun", "olderThanSeconds", "finishedBefore", "matched", "deleted"],
        "properties": {
            "dryRun": {"type": "boolean"},
            "olderThanSeconds": {"type": "number"},
            "finishedBefore": {"type": "string", "format": "date-time"},
            "matched": {"type": "integer"},
            "deleted": {"type": "integer"},
        },
    },
}

_NODE_SCHEMAS: dict[str, Any] = {
    "Node": {
        "type": "object",
        "required": ["id", "host", "pid", "startedAt", "lastSeen", "storage", "jobTypes"],
        "properties": {
            "id": {"type": "string", "description": "its lease owner id: host:pid:random"},
            "host": {"type": "string"},
            "pid": {"type": "integer"},
            "startedAt": {"type": "string", "format": "date-time"},
            "lastSeen": {"type": "string", "format": "date-time"},
            "storage": {
                "type": "string",
                "description": "where it keeps assets: file:///path or s3://bucket/prefix",
            },
            "jobTypes": {
                "type": "array",
                "items": {"type": "string"},
                "description": "what its workers run (none on a node without workers)",
            },
        },
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "checks", "nodes", "warnings"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "unavailable"]},
            "checks": {
                "type": "object",
                "required": ["runtime", "store", "storage"],
                "properties": {
                    "runtime": {"type": "boolean"},
                    "store": {"type": "boolean"},
                    "storage": {"type": "boolean"},
                },
            },
            "nodes": {
                "type": "integer",
                "minimum": 1,
                "description": "live nodes on this node's store, this one included",
            },
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "what an operator should fix, e.g. nodes that cannot "
                "serve each other's assets",
            },
        },
    },
}


_S = _param("scheduleId", "path", {"type": "string", "format": "uuid"}, "the schedule's id")
_TIME = {"type": "string", "format": "date-time"}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
_SCHEDULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Makes a job of jobType with input at every tick of cron (5 fields, read "
    "in timezone) or every `every` seconds; exactly one of the two is set.",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "companyId": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "jobType": {"type": "string"},
        "input": {"type": "object"},
        "cron": {"type": ["string", "null"]},
        "every": {"type": ["number", "null"]},
        "timezone": {"type": "string", "description": "an IANA name; UTC by default"},
        "priority": {"type": "integer"},
        "maxAttempts": {"type": ["integer", "null"]},
        "timeoutSeconds": {"type": ["number", "null"]},
        "catchUp": {
            "type": "string",
            "enum": ["skip", "once"],
            "description": "ticks missed while no node ran: skipped, or one job for all",
        },
        "nextRunAt": {**_OPTIONAL_TIME, "description": "null while paused"},
        "lastRunAt": {**_OPTIONAL_TIME, "description": "the tick of the last job it made"},
        "lastJobId": {"type": ["string", "null"]},
        "paused": {"type": "boolean"},
        "createdAt": _TIME,
        "updatedAt": _TIME,
    },
}


def _only(given: str, kind: str, other: str) -> dict[str, Any]:
    return {"required": [given], "properties": {given: {"type": kind}, other: {"type": "null"}}}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema["type"]
    kinds = kind if isinstance(kind, list) else [kind]
    nullable = {**schema, "type": [*kinds, "null"] if "null" not in kinds else kinds}
    if "enum" in schema:
        nullable["enum"] = [*schema["enum"], None]
    return nullable


def _schedule_paths(job_types: list[str]) -> dict[str, Any]:
    fields = schedule_schemas()
    fields["jobType"] = {**fields["jobType"], "enum": job_types}
    # In a create, null is "left out" (the default) for every field but the two
    # required ones; exactly one of cron and every is given.
    create = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "jobType"],
        "properties": {
            wire: schema if wire in ("name", "jobType") else _or_null(schema)
            for wire, schema in fields.items()
        },
        "oneOf": [_only("cron", "string", "every"), _only("every", "number", "cron")],
    }
    change = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": fields,
        "not": {"required": ["cron", "every"]},
    }
    one = _json(_ref("Schedule"), "the schedule")
    return {
        "/api/companies/{companyId}/schedules": {
            "post": _op(
                "Create a schedule (422: a cron expression or timezone that means nothing, "
                "or an unknown job type; 409: the company has one of that name)",
                {"201": one, **_errors(400, 401, 404, 409, 413, 422)},
                params=[_C],
                body=create,
            ),
            "get": _op(
                "A page of the company's schedules, newest first",
                {"200": _json(_page("Schedule"), "schedules"), **_errors(400, 401, 404)},
                params=[
                    _C,
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    ),
                    _param("cursor", "query", _CURSOR, "the nextCursor of the page before"),
                ],
            ),
        },
        "/api/companies/{companyId}/schedules/{scheduleId}": {
            "get": _op("One schedule", {"200": one, **_errors(401, 404)}, params=[_C, _S]),
            "patch": _op(
                "Change any field (paused: true pauses, false resumes); cron replaces every "
                "and the reverse; a change of timing, or a resume, moves the next tick",
                {"200": one, **_errors(400, 401, 404, 409, 413, 422)},
                params=[_C, _S],
                body=change,
            ),
            "delete": _op(
                "Delete a schedule (the jobs it made stay)",
                {"204": {"description": "deleted"}, **_errors(401, 404)},
                params=[_C, _S],
            ),
        },
    }


_JOB = "/api/companies/{companyId}/content-jobs"
_SCHEDULES = "/api/companies/{companyId}/schedules"
_ASSET = "/api/companies/{companyId}/assets"
_TOKENS = "/api/companies/{companyId}/tokens"
_OPERATION_IDS = {
    ("post", "/api/companies"): "createCompany",
    ("get", "/api/companies"): "listCompanies",
    ("get", "/api/companies/{companyId}"): "getCompany",
    ("patch", "/api/companies/{companyId}"): "updateCompany",
    ("post", _TOKENS): "createToken",
    ("get", _TOKENS): "listTokens",
    ("delete", _TOKENS + "/{tokenId}"): "revokeToken",
    ("post", _JOB): "submitJob",
    ("get", _JOB): "listJobs",
    ("post", _JOB + "/batch"): "submitJobs",
    ("get", _JOB + "/{jobId}"): "getJob",
    ("get", "/api/content-jobs/{jobId}"): "getJobById",
    ("post", _JOB + "/{jobId}/cancel"): "cancelJob",
    ("post", _JOB + "/{jobId}/retry"): "retryJob",
    ("get", _JOB + "/{jobId}/events"): "jobEvents",
    ("get", "/api/companies/{companyId}/events"): "companyEvents",
    ("get", "/api/events"): "allEvents",
    ("post", _ASSET): "uploadAsset",
    ("get", _ASSET): "listAssets",
    ("get", _ASSET + "/{assetId}"): "getAsset",
    ("get", _ASSET + "/{assetId}/content"): "getAssetContent",
    ("get", "/api/content-jobs"): "listAllJobs",
    ("post", _JOB + "/bulk-retry"): "bulkRetryJobs",
    ("post", _JOB + "/bulk-cancel"): "bulkCancelJobs",
    ("post", "/api/content-jobs/bulk-retry"): "bulkRetryAllJobs",
    ("post", "/api/content-jobs/bulk-cancel"): "bulkCancelAllJobs",
    ("post", "/api/content-jobs/prune"): "pruneJobs",
    ("post", "/api/gc"): "collectGarbage",
    ("get", "/api/stats"): "stats",
    ("get", "/api/nodes"): "listNodes",
    ("get", "/api/job-types"): "listJobTypes",
    ("post", _SCHEDULES): "createSchedule",
    ("get", _SCHEDULES): "listSchedules",
    ("get", _SCHEDULES + "/{scheduleId}"): "getSchedule",
    ("patch", _SCHEDULES + "/{scheduleId}"): "updateSchedule",
    ("delete", _SCHEDULES + "/{scheduleId}"): "deleteSchedule",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
    ("get", "/openapi.json"): "openapi",
}
_SAME_COMPANY = {"companyId": "$request.path.companyId"}
# What a create answer leads to (OpenAPI links): a client, or a fuzzer's stateful
# phase, follows them with real ids instead of guessing.
_LINKS = {
    ("post", "/api/companies", "201"): (
        [
            "getCompany",
            "updateCompany",
            "createToken",
            "listTokens",
            "submitJob",
            "submitJobs",
            "listJobs",
            "bulkRetryJobs",
            "bulkCancelJobs",
            "uploadAsset",
            "listAssets",
            "companyEvents",
            "createSchedule",
            "listSchedules",
        ],
        {"companyId": "$response.body#/id"},
    ),
    ("post", _SCHEDULES, "201"): (
        ["getSchedule", "updateSchedule", "deleteSchedule"],
        {**_SAME_COMPANY, "scheduleId": "$response.body#/id"},
    ),
    ("post", _JOB, "202"): (
        ["getJob", "getJobById", "cancelJob", "retryJob", "jobEvents"],
        {**_SAME_COMPANY, "jobId": "$response.body#/jobId"},
    ),
    ("post", _TOKENS, "201"): (["revokeToken"], {**_SAME_COMPANY, "tokenId": "$response.body#/id"}),
    ("post", _ASSET, "201"): (
        ["getAsset", "getAssetContent"],
        {**_SAME_COMPANY, "assetId": "$response.body#/id"},
    ),
}


def _name_and_link(paths: dict[str, Any]) -> None:
    by_id = {}
    for (method, path), operation_id in _OPERATION_IDS.items():
        paths[path][method]["operationId"] = operation_id
        by_id[operation_id] = paths[path][method]
    for (method, path, status), (targets, parameters) in _LINKS.items():
        links = {}
        for target in targets:
            # A link sets only the parameters its target has (getJobById has no company).
            has = {p["name"] for p in by_id[target].get("parameters", ())}
            given = {name: value for name, value in parameters.items() if name in has}
            links[target] = {"operationId": target, "parameters": given}
        paths[path][method]["responses"][status]["links"] = links
