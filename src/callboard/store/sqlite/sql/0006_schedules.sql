-- 0006: schedules, and the jobs they make. A job made by a schedule carries the
-- schedule and the tick it was made for; the unique index on the two is what makes
-- a tick give one job however many nodes or restarts race for it.

ALTER TABLE content_jobs ADD COLUMN schedule_id TEXT;

ALTER TABLE content_jobs ADD COLUMN scheduled_for TEXT;

CREATE UNIQUE INDEX content_jobs_schedule_tick
    ON content_jobs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;

CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    job_type TEXT NOT NULL,
    input TEXT NOT NULL,
    cron TEXT,
    every REAL,
    timezone TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER,
    timeout_seconds REAL,
    catch_up TEXT NOT NULL CHECK (catch_up IN ('skip', 'once')),
    next_run_at TEXT, -- NULL while paused
    last_run_at TEXT,
    last_job_id TEXT,
    paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1,
    CHECK ((cron IS NULL) <> (every IS NULL))
) STRICT;

CREATE UNIQUE INDEX schedules_company_name ON schedules (company_id, name);

CREATE INDEX schedules_company_created ON schedules (company_id, created_at DESC, id DESC);

CREATE INDEX schedules_created ON schedules (created_at DESC, id DESC);

CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;
