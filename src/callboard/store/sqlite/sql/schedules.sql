-- Named queries of the SQLite store for schedules (store/sqlite/store.py).

-- name: insert_schedule
INSERT INTO schedules (
    id, company_id, name, job_type, input, cron, every, timezone, priority, max_attempts,
    timeout_seconds, catch_up, next_run_at, last_run_at, last_job_id, paused, created_at,
    updated_at, revision
) VALUES (
    :id, :company_id, :name, :job_type, :input, :cron, :every, :timezone, :priority,
    :max_attempts, :timeout_seconds, :catch_up, :next_run_at, :last_run_at, :last_job_id,
    :paused, :created_at, :updated_at, :revision
)
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE id = :id;

-- name: get_schedule_by_name
SELECT * FROM schedules WHERE company_id = :company_id AND name = :name;

-- name: list_schedules_company
SELECT * FROM schedules
WHERE company_id = :company_id
  AND (:after_created_at IS NULL OR (created_at, id) < (:after_created_at, :after_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_schedules_all
SELECT * FROM schedules
WHERE (:after_created_at IS NULL OR (created_at, id) < (:after_created_at, :after_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: update_schedule
UPDATE schedules
SET name = :name,
    job_type = :job_type,
    input = :input,
    cron = :cron,
    every = :every,
    timezone = :timezone,
    priority = :priority,
    max_attempts = :max_attempts,
    timeout_seconds = :timeout_seconds,
    catch_up = :catch_up,
    next_run_at = :next_run_at,
    last_run_at = :last_run_at,
    last_job_id = :last_job_id,
    paused = :paused,
    updated_at = :updated_at,
    revision = revision + 1
WHERE id = :id AND revision = :revision
RETURNING *;

-- name: delete_schedule
DELETE FROM schedules WHERE id = :id RETURNING id;

-- name: due_schedules
SELECT * FROM schedules
WHERE next_run_at IS NOT NULL AND next_run_at <= :now AND NOT paused
ORDER BY next_run_at, id
LIMIT :limit;

-- name: next_schedule_at
SELECT min(next_run_at) FROM schedules WHERE next_run_at IS NOT NULL AND NOT paused;

-- name: schedule_at_revision
SELECT 1 FROM schedules WHERE id = :id AND revision = :revision AND NOT paused;

-- name: schedule_tick_exists
SELECT 1 FROM content_jobs WHERE schedule_id = :schedule_id AND scheduled_for = :scheduled_for;

-- name: insert_scheduled_job
INSERT INTO content_jobs (
    id, company_id, job_type, status, priority, input, progress_percent,
    progress_message, attempt, max_attempts, timeout_seconds, run_at,
    source_task_id, idempotency_key, created_at, updated_at, schedule_id, scheduled_for
) VALUES (
    :id, :company_id, :job_type, 'queued', :priority, :input, 0,
    NULL, 0, :max_attempts, :timeout_seconds, :run_at,
    :source_task_id, :idempotency_key, :created_at, :created_at, :schedule_id, :scheduled_for
)
RETURNING *;

-- name: advance_schedule
UPDATE schedules
SET next_run_at = :next_run_at,
    last_run_at = coalesce(:last_run_at, last_run_at),
    last_job_id = coalesce(:last_job_id, last_job_id),
    updated_at = :now,
    revision = revision + 1
WHERE id = :id AND revision = :revision;
