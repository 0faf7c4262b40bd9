-- 0005: a job keeps what its handler returned (README, "Job results"): compact JSON,
-- written with the done transition, NULL for a handler that returned nothing and for
-- every job that is not done. `json`, not `jsonb`: the text stays as the node wrote it
-- (jsonb refuses "\u0000" and reorders keys). Event payloads carry it.

ALTER TABLE content_jobs ADD COLUMN result json;

-- An event's payload: the job as Job.to_dict() gives it (no lease fields).
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
    'sourceTaskId', j.source_task_id,
    'idempotencyKey', j.idempotency_key,
    'createdAt', callboard_iso(j.created_at),
    'startedAt', callboard_iso(j.started_at),
    'finishedAt', callboard_iso(j.finished_at),
    'updatedAt', callboard_iso(j.updated_at)
)::text;
