-- 0009: a failed attempt keeps what raised (README, "When a job fails"): the exception's
-- type ("KeyError", "mymodule.MyError"; "Timeout", "WorkerLost", "InvalidResult" for
-- the endings callboard decides) and its formatted traceback, at most 16 KiB (the tail).
-- NULL for a job that has not failed, and for a cancelled one. Event payloads carry
-- both, so each attempt's failure stays in the job's history.

ALTER TABLE content_jobs ADD COLUMN error_type text;
ALTER TABLE content_jobs ADD COLUMN error_traceback text;

CREATE OR REPLACE FUNCTION callboard_job_payload(j content_jobs) RETURNS text
LANGUAGE sql STABLE
RETURN json_build_object(
    'id', j.id,
    'companyId', j.company_id,
    'jobType', j.job_type,
    'status', j.status,
    'priority', j.priority,
    'input', j.input,
    'progress', json_build_object('percent', j.progress_percent, 'message', j.progress_message),
    'attempt', j.attempt,
    'maxAttempts', j.max_attempts,
    'timeoutSeconds', j.timeout_seconds,
    'runAt', callboard_iso(j.run_at),
    'resultAssetId', j.result_asset_id,
    'result', j.result,
    'errorMessage', j.error_message,
    'errorType', j.error_type,
    'errorTraceback', j.error_traceback,
    'sourceTaskId', j.source_task_id,
    'idempotencyKey', j.idempotency_key,
    'createdAt', callboard_iso(j.created_at),
    'startedAt', callboard_iso(j.started_at),
    'finishedAt', callboard_iso(j.finished_at),
    'updatedAt', callboard_iso(j.updated_at),
    'scheduleId', j.schedule_id,
    'scheduledFor', callboard_iso(j.scheduled_for)
)::text;
