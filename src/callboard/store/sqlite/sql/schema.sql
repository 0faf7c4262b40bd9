-- The SQLite schema as it stands after every migration: the source of truth.
-- A migration that changes it must change this file the same way; a test
-- replays the migrations on an empty database and compares the two.
--
-- Times are TEXT in one fixed format, callboard.jobs.iso(): UTC,
-- "YYYY-MM-DDTHH:MM:SS.ffffffZ". Fixed width, so text order is time order and
-- comparisons such as run_at <= :now work on the strings. JSON is TEXT.

CREATE TABLE companies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    -- At most this many of its jobs run at once; NULL: no cap.
    max_running INTEGER CHECK (max_running >= 1)
) STRICT;

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    company_id TEXT REFERENCES companies (id) ON DELETE CASCADE, -- NULL: the operator
    label TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

CREATE INDEX api_tokens_company ON api_tokens (company_id, created_at);

CREATE INDEX api_tokens_prefix ON api_tokens (prefix);

CREATE TABLE content_jobs (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    job_type TEXT NOT NULL,
    -- ORs, not IN: SQLite builds a temporary b-tree for an IN list of three or more
    -- values each time a statement runs (migration 0009).
    status TEXT NOT NULL
        CHECK (status = 'queued' OR status = 'running' OR status = 'done'
            OR status = 'failed' OR status = 'cancelled'),
    priority INTEGER NOT NULL DEFAULT 0,
    input TEXT NOT NULL,
    progress_percent INTEGER NOT NULL DEFAULT 0
        CHECK (progress_percent BETWEEN 0 AND 100),
    progress_message TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    timeout_seconds REAL,
    run_at TEXT NOT NULL,
    result_asset_id TEXT,
    error_message TEXT,
    source_task_id TEXT,
    idempotency_key TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    updated_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    -- What the handler returned, as compact JSON text; set by the done transition.
    result TEXT, schedule_id TEXT, scheduled_for TEXT, error_type TEXT, error_traceback TEXT
) STRICT;

CREATE UNIQUE INDEX content_jobs_idempotency
    ON content_jobs (company_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One job per schedule and tick, whichever node makes it.
CREATE UNIQUE INDEX content_jobs_schedule_tick
    ON content_jobs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;

-- Claiming reads each job type's queued jobs in claim order (the implicit rowid
-- last is the insertion-order tie-break); next_run_at looks up per type.
CREATE INDEX content_jobs_claim
    ON content_jobs (job_type, priority DESC, run_at, created_at)
    WHERE status = 'queued';

CREATE INDEX content_jobs_queued_type
    ON content_jobs (job_type, run_at)
    WHERE status = 'queued';

-- The fair claim reads each company's queued jobs of a type in claim order, and
-- counts each company's running jobs.
CREATE INDEX content_jobs_fair
    ON content_jobs (company_id, job_type, priority DESC, run_at, created_at)
    WHERE status = 'queued';

CREATE INDEX content_jobs_running_company
    ON content_jobs (company_id)
    WHERE status = 'running';

-- The reaper looks for running jobs by lease expiry.
CREATE INDEX content_jobs_leases
    ON content_jobs (lease_expires_at)
    WHERE status = 'running';

-- Lists are newest first, for one company or for all.
CREATE INDEX content_jobs_company_created
    ON content_jobs (company_id, created_at DESC, id DESC);

CREATE INDEX content_jobs_created
    ON content_jobs (created_at DESC, id DESC);

CREATE INDEX content_jobs_source_task
    ON content_jobs (company_id, source_task_id, created_at DESC, id DESC)
    WHERE source_task_id IS NOT NULL;

-- Retention deletes finished jobs oldest finished first. The queries repeat this WHERE
-- word for word, or SQLite does not use the index.
CREATE INDEX content_jobs_finished
    ON content_jobs (finished_at)
    WHERE status = 'done' OR status = 'failed' OR status = 'cancelled';

-- A list of one status reads that status's jobs newest first, for one company or for
-- all, instead of filtering every job newest first.
CREATE INDEX content_jobs_company_status
    ON content_jobs (company_id, status, created_at DESC, id DESC);

CREATE INDEX content_jobs_status
    ON content_jobs (status, created_at DESC, id DESC);

-- AUTOINCREMENT: ids are never reused, even after the newest rows are deleted,
-- because they are SSE ids that clients resume from.
CREATE TABLE content_job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES content_jobs (id) ON DELETE CASCADE,
    company_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE INDEX content_job_events_job ON content_job_events (job_id, id);

CREATE INDEX content_job_events_company ON content_job_events (company_id, id);

CREATE INDEX content_job_events_created ON content_job_events (created_at);

-- One row: the highest event id ever pruned, so a resuming client can be told it
-- missed events (SSE stream.gap).
CREATE TABLE event_log_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    pruned_through INTEGER NOT NULL
) STRICT;

INSERT INTO event_log_state (singleton, pruned_through) VALUES (1, 0);

CREATE TABLE assets (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    namespace TEXT NOT NULL,
    object_key TEXT NOT NULL UNIQUE,
    content_type TEXT NOT NULL,
    byte_size INTEGER NOT NULL CHECK (byte_size >= 0),
    sha256 TEXT NOT NULL,
    original_filename TEXT NOT NULL,
    source_task_id TEXT,
    created_by_job_id TEXT REFERENCES content_jobs (id) ON DELETE SET NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE INDEX assets_company_created ON assets (company_id, created_at DESC, id DESC);

CREATE INDEX assets_source_task
    ON assets (company_id, source_task_id, created_at DESC, id DESC)
    WHERE source_task_id IS NOT NULL;

CREATE INDEX assets_job ON assets (created_by_job_id) WHERE created_by_job_id IS NOT NULL;

-- The running nodes, each refreshing its row every few seconds (actors/presence.py)
-- and deleting it when it stops. The embedded store has one.
CREATE TABLE callboard_nodes (
    node_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    storage_url TEXT NOT NULL,
    job_types TEXT NOT NULL, -- a JSON array of strings
    last_seen TEXT NOT NULL
) STRICT;

-- Schedules make ordinary jobs at their ticks (actors/scheduler.py); next_run_at is
-- NULL while paused. revision increases with every change, so a write made from an
-- older read changes nothing.
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
