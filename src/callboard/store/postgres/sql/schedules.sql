-- Named queries of the PostgreSQL store for schedules (store/postgres/store.py).

-- name: insert_schedule
INSERT INTO schedules (
    id, company_id, name, job_type, input, cron, every, timezone, priority, max_attempts,
    timeout_seconds, catch_up, next_run_at, last_run_at, last_job_id, paused, created_at,
    updated_at, revision
) VALUES ($1, $2, $3, $4, $5::json, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE id = $1;

-- name: get_schedule_by_name
SELECT * FROM schedules WHERE company_id = $1 AND name = $2;

-- name: list_schedules
SELECT * FROM schedules
WHERE ($1::text IS NULL OR company_id = $1)
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::text))
ORDER BY created_at DESC, id DESC
LIMIT $4;

-- name: update_schedule
-- $1 id, $2 revision read; the rest as insert_schedule's $3.. ($2 company and
-- created_at never change).
UPDATE schedules
SET name = $3,
    job_type = $4,
    input = $5::json,
    cron = $6,
    every = $7,
    timezone = $8,
    priority = $9,
    max_attempts = $10,
    timeout_seconds = $11,
    catch_up = $12,
    next_run_at = $13,
    last_run_at = $14,
    last_job_id = $15,
    paused = $16,
    updated_at = $17,
    revision = revision + 1
WHERE id = $1 AND revision = $2
RETURNING *;

-- name: delete_schedule
DELETE FROM schedules WHERE id = $1 RETURNING id;

-- name: due_schedules
SELECT * FROM schedules
WHERE next_run_at IS NOT NULL AND next_run_at <= $1 AND NOT paused
ORDER BY next_run_at, id
LIMIT $2;

-- name: next_schedule_at
SELECT min(next_run_at) FROM schedules WHERE next_run_at IS NOT NULL AND NOT paused;

-- name: fire_schedule
-- One tick, as one statement: while schedule $1 is at revision $2 and not paused (its
-- row locked: a node racing for the same tick waits, then finds the revision moved on
-- and does nothing), insert its job ($5 id, NULL for none) unless the tick's job
-- exists (the unique key content_jobs_schedule_tick), and advance the schedule to $3.
WITH s AS (
    SELECT id FROM schedules WHERE id = $1 AND revision = $2 AND NOT paused FOR UPDATE
),
inserted AS (
    INSERT INTO content_jobs AS j (
        id, company_id, job_type, status, priority, input, max_attempts,
        timeout_seconds, run_at, created_at, updated_at, schedule_id, scheduled_for
    )
    SELECT $5, $6, $7, 'queued', $8, $9::json, $10, $11, $12, $4, $4, s.id, $13
    FROM s WHERE $5::text IS NOT NULL
    ON CONFLICT (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL DO NOTHING
    RETURNING j.*, callboard_job_payload(j) AS payload
),
advanced AS (
    UPDATE schedules AS sc
    SET next_run_at = $3,
        last_run_at = coalesce((SELECT scheduled_for FROM inserted), sc.last_run_at),
        last_job_id = coalesce((SELECT id FROM inserted), sc.last_job_id),
        updated_at = $4,
        revision = sc.revision + 1
    FROM s WHERE sc.id = s.id
    RETURNING sc.id
),
appended AS (
    SELECT callboard_append_events(
        ARRAY[id], ARRAY[company_id], ARRAY['content_job.queued'], ARRAY[payload],
        ARRAY[$4::timestamptz]
    ) AS last_id
    FROM inserted
)
SELECT inserted.*, appended.last_id AS event_id FROM inserted, appended;
