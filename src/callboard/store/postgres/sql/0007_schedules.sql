-- 0007: schedules, and the jobs they make. A job made by a schedule carries the
-- schedule and the tick it was made for; the unique index on the two is what makes
-- a tick give one job however many nodes or restarts race for it. The event payload
-- carries both.

ALTER TABLE content_jobs
    ADD COLUMN schedule_id text,
    ADD COLUMN scheduled_for timestamptz;

CREATE UNIQUE INDEX content_jobs_schedule_tick
    ON content_jobs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;

CREATE TABLE schedules (
    id text PRIMARY KEY,
    company_id text NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name text NOT NULL,
    job_type text NOT NULL,
    input json NOT NULL,
    cron text,
    every double precision,
    timezone text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    max_attempts integer,
    timeout_seconds double precision,
    catch_up text NOT NULL CHECK (catch_up IN ('skip', 'once')),
    next_run_at timestamptz, -- NULL while paused
    last_run_at timestamptz,
    last_job_id text,
    paused boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    revision bigint NOT NULL DEFAULT 1,
    CHECK ((cron IS NULL) <> (every IS NULL))
);

CREATE UNIQUE INDEX schedules_company_name ON schedules (company_id, name);

CREATE INDEX schedules_company_created ON schedules (company_id, created_at DESC, id DESC);

CREATE INDEX schedules_created ON schedules (created_at DESC, id DESC);

CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;

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
    'updatedAt', callboard_iso(j.updated_at),
    'scheduleId', j.schedule_id,
    'scheduledFor', callboard_iso(j.scheduled_for)
)::text;
