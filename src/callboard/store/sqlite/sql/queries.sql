-- Named queries of the SQLite store, loaded once by callboard.store.queries.
-- Each block starts with "-- name: <name>" and holds one statement with :named
-- parameters. Optional filters use "(:x IS NULL OR col = :x)". Lists of values
-- come in as one JSON text parameter read with json_each(), so no SQL is ever
-- built by formatting strings.

-- name: journal_mode_wal
PRAGMA journal_mode = WAL;

-- name: synchronous_off
PRAGMA synchronous = OFF;

-- name: synchronous_normal
PRAGMA synchronous = NORMAL;

-- name: synchronous_full
PRAGMA synchronous = FULL;

-- name: synchronous_extra
PRAGMA synchronous = EXTRA;

-- name: foreign_keys_on
PRAGMA foreign_keys = ON;

-- name: busy_timeout
PRAGMA busy_timeout = 5000;

-- name: wal_autocheckpoint_backstop
-- The writer's own checkpoints, a backstop: the store's checkpointer thread normally
-- checkpoints long before the WAL reaches this many pages (16 MB of 4 KB pages).
PRAGMA wal_autocheckpoint = 4000;

-- name: wal_checkpoint_passive
PRAGMA wal_checkpoint(PASSIVE);

-- name: query_only
PRAGMA query_only = ON;

-- name: open_wal
-- A connection opens the WAL file at its first read: readers do it at start, so the
-- node's descriptors stay the same from then on whichever readers a load happens to use.
SELECT count(*) FROM sqlite_master;

-- name: ping
SELECT 1;

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
) STRICT;

-- name: applied_versions
SELECT version FROM schema_version ORDER BY version;

-- name: record_migration
-- applied_at is bookkeeping, not domain time, so SQLite's own clock is fine here.
INSERT INTO schema_version (version, name, applied_at)
VALUES (:version, :name, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

-- name: schema_objects
SELECT type, name, tbl_name, sql
FROM sqlite_master
WHERE name NOT LIKE 'sqlite_%' AND name != 'schema_version'
ORDER BY type, name;

-- name: insert_company
INSERT INTO companies (id, name, created_at)
VALUES (:id, :name, :created_at)
RETURNING id, name, created_at, max_running;

-- name: get_company
SELECT id, name, created_at, max_running FROM companies WHERE id = :id;

-- name: get_company_by_name
SELECT id, name, created_at, max_running FROM companies WHERE name = :name;

-- name: list_companies
-- rowid breaks ties in insertion order.
SELECT id, name, created_at, max_running FROM companies ORDER BY created_at, rowid;

-- name: set_company_max_running
UPDATE companies SET max_running = :max_running WHERE id = :id
RETURNING id, name, created_at, max_running;

-- name: count_by_company
-- Running and queued jobs by company (both partial indexes lead with company_id).
-- Two scans of partial indexes, never of the finished jobs.
SELECT company_id, sum(running), sum(queued) FROM (
    SELECT company_id, count(*) AS running, 0 AS queued FROM content_jobs
    WHERE status = 'running' GROUP BY company_id
    UNION ALL
    SELECT company_id, 0, count(*) FROM content_jobs
    WHERE status = 'queued' GROUP BY company_id
)
GROUP BY company_id
ORDER BY company_id;

-- name: company_exists
SELECT 1 FROM companies WHERE id = :id;

-- name: get_job
SELECT * FROM content_jobs WHERE id = :id;

-- name: get_job_by_idempotency_key
SELECT * FROM content_jobs
WHERE company_id = :company_id AND idempotency_key = :idempotency_key;

-- name: insert_job
-- No RETURNING: the store builds the row it wrote (sqlite/store.py, _queued_row).
INSERT INTO content_jobs (
    id, company_id, job_type, status, priority, input, progress_percent,
    progress_message, attempt, max_attempts, timeout_seconds, run_at,
    source_task_id, idempotency_key, created_at, updated_at
) VALUES (
    :id, :company_id, :job_type, 'queued', :priority, :input, 0,
    NULL, 0, :max_attempts, :timeout_seconds, :run_at,
    :source_task_id, :idempotency_key, :created_at, :created_at
);

-- name: overtakes_queued
-- A queued job of :job_type, due at :now, with the same or a higher :priority than
-- a job about to be started on insert (content_jobs_claim answers it); or a cap on
-- the job's company (:company_id), whose running jobs only the claim counts.
SELECT 1 FROM content_jobs
WHERE job_type = :job_type AND status = 'queued' AND priority >= :priority
  AND run_at <= :now
UNION ALL
SELECT 1 FROM companies WHERE id = :company_id AND max_running IS NOT NULL
LIMIT 1;

-- name: insert_running_job
-- A job started as it is inserted (insert_running): written running at once, under
-- :lease_owner's lease, so it never enters the queued indexes; the store still
-- records its queued event first. No RETURNING, as for insert_job.
INSERT INTO content_jobs (
    id, company_id, job_type, status, priority, input, progress_percent,
    progress_message, attempt, max_attempts, timeout_seconds, run_at,
    source_task_id, idempotency_key, created_at, started_at, updated_at,
    lease_owner, lease_expires_at
) VALUES (
    :id, :company_id, :job_type, 'running', :priority, :input, 0,
    NULL, 1, :max_attempts, :timeout_seconds, :run_at,
    :source_task_id, :idempotency_key, :created_at, :now, :now,
    :lease_owner, :lease_expires_at
);

-- name: insert_event
-- No RETURNING: the new id is the cursor's lastrowid.
INSERT INTO content_job_events (job_id, company_id, type, payload, created_at)
VALUES (:job_id, :company_id, :type, :payload, :created_at);

-- name: list_jobs_company
SELECT * FROM content_jobs
WHERE company_id = :company_id
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:source_task_id IS NULL OR source_task_id = :source_task_id)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:after_created_at IS NULL OR (created_at, id) < (:after_created_at, :after_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_jobs_all
SELECT * FROM content_jobs
WHERE (:job_type IS NULL OR job_type = :job_type)
  AND (:source_task_id IS NULL OR source_task_id = :source_task_id)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:after_created_at IS NULL OR (created_at, id) < (:after_created_at, :after_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_jobs_company_status
-- One status of a company (content_jobs_company_status): a few queued jobs are found
-- at once under millions of finished ones. Several statuses are merged by the caller.
SELECT * FROM content_jobs
WHERE company_id = :company_id AND status = :status
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:source_task_id IS NULL OR source_task_id = :source_task_id)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:after_created_at IS NULL OR (created_at, id) < (:after_created_at, :after_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_jobs_all_status
-- One status of every company (content_jobs_status).
SELECT * FROM content_jobs
WHERE status = :status
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:source_task_id IS NULL OR source_task_id = :source_task_id)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:after_created_at IS NULL OR (created_at, id) < (:after_created_at, :after_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: count_by_status
SELECT status, count(*) AS n FROM content_jobs
WHERE (:company_id IS NULL OR company_id = :company_id)
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
GROUP BY status;

-- name: count_queued
SELECT count(*) FROM (
    SELECT 1 FROM content_jobs WHERE status = 'queued' AND run_at <= :now LIMIT :at_most
);

-- name: next_run_at
SELECT min(run_at) FROM content_jobs
WHERE status = 'queued' AND job_type IN (SELECT value FROM json_each(:job_types));

-- name: claim_order
-- The jobs a claim takes, in claim order (JobStore.claim: fair between companies).
-- :type_caps is a JSON object {job_type: cap or null}. Only each company's first
-- :limit queued jobs of a type in claim order can be taken, so those are read, one
-- seek of content_jobs_fair per company and type (the unary + keeps the planner
-- from range-scanning on run_at instead). Each company's are ranked from 0 on top
-- of its running count (its load), those at or past its cap dropped, then those
-- past their type's cap, and the best :limit of the rest taken.
WITH caps AS (
    SELECT key AS job_type, value AS cap FROM json_each(:type_caps)
),
running AS (
    SELECT company_id, count(*) AS n FROM content_jobs
    WHERE status = 'running' GROUP BY company_id
),
fleet AS (
    SELECT c.id, c.max_running, coalesce(r.n, 0) AS running
    FROM companies AS c LEFT JOIN running AS r ON r.company_id = c.id
    WHERE c.max_running IS NULL OR coalesce(r.n, 0) < c.max_running
),
candidates AS (
    SELECT j.id, j.company_id, j.job_type, j.priority, j.run_at, j.created_at,
           j.rowid AS seq, caps.cap, fleet.running, fleet.max_running
    FROM caps CROSS JOIN fleet JOIN content_jobs AS j ON j.rowid IN (
        SELECT k.rowid FROM content_jobs AS k
        WHERE k.company_id = fleet.id AND k.job_type = caps.job_type
          AND k.status = 'queued' AND +k.run_at <= :now
        ORDER BY k.priority DESC, k.run_at, k.created_at, k.rowid
        LIMIT :limit
    )
),
loaded AS (
    SELECT *, running - 1 + row_number() OVER (
        PARTITION BY company_id ORDER BY priority DESC, run_at, created_at, seq
    ) AS load
    FROM candidates
),
eligible AS (
    SELECT *, row_number() OVER (
        PARTITION BY job_type ORDER BY priority DESC, load, run_at, created_at, seq
    ) AS type_rank
    FROM loaded
    WHERE max_running IS NULL OR load < max_running
)
SELECT id FROM eligible
WHERE cap IS NULL OR type_rank <= cap
ORDER BY priority DESC, load, run_at, created_at, seq
LIMIT :limit;

-- name: claim
-- Starts the jobs of :ids (a JSON array, from claim_order, in the same transaction).
-- The caller puts the RETURNING rows (unordered) back in claim order. The unary +
-- keeps the planner on the primary key: without statistics it would read every
-- queued job through content_jobs_status and test each against :ids.
UPDATE content_jobs
SET status = 'running',
    attempt = attempt + 1,
    started_at = :now,
    finished_at = NULL,
    lease_owner = :lease_owner,
    lease_expires_at = :lease_expires_at,
    progress_percent = 0,
    progress_message = NULL,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND +status = 'queued'
RETURNING *, rowid AS seq;

-- name: renew_leases
-- The unary + keeps the planner on the primary key, as in claim.
UPDATE content_jobs
SET lease_expires_at = :lease_expires_at
WHERE id IN (SELECT value FROM json_each(:job_ids))
  AND +status = 'running' AND lease_owner = :lease_owner
RETURNING id, cancel_requested;

-- name: record_progress
-- This and the guarded transitions after it (complete to retry) have no RETURNING:
-- SQLite fills a temporary table per statement for it, and reading the row back by
-- its key costs less (sqlite/store.py, _change).
UPDATE content_jobs
SET progress_percent = :percent, progress_message = :message, updated_at = :now
WHERE id = :id AND status = 'running' AND lease_owner = :lease_owner;

-- name: complete
UPDATE content_jobs
SET status = 'done',
    progress_percent = 100,
    finished_at = :now,
    lease_owner = NULL,
    lease_expires_at = NULL,
    error_message = NULL,
    error_type = NULL,
    error_traceback = NULL,
    result_asset_id = coalesce(:result_asset_id, result_asset_id),
    result = :result,
    updated_at = :now
WHERE id = :id AND status = 'running' AND lease_owner = :lease_owner;

-- name: fail_retry
UPDATE content_jobs
SET status = 'queued',
    run_at = :retry_at,
    error_message = :error_message,
    error_type = :error_type,
    error_traceback = :error_traceback,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE id = :id AND status = 'running' AND lease_owner = :lease_owner;

-- name: fail_final
UPDATE content_jobs
SET status = 'failed',
    finished_at = :now,
    error_message = :error_message,
    error_type = :error_type,
    error_traceback = :error_traceback,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE id = :id AND status = 'running' AND lease_owner = :lease_owner;

-- name: mark_cancelled
-- With :only_if_requested = 1 it acts only on a job asked to stop: a failed attempt
-- of such a job ends cancelled rather than failed or retried.
UPDATE content_jobs
SET status = 'cancelled',
    finished_at = :now,
    error_message = 'cancelled',
    error_type = NULL,
    error_traceback = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE id = :id AND status = 'running' AND lease_owner = :lease_owner
  AND (:only_if_requested = 0 OR cancel_requested = 1);

-- name: cancel_queued
UPDATE content_jobs
SET status = 'cancelled',
    finished_at = :now,
    error_message = 'cancelled',
    error_type = NULL,
    error_traceback = NULL,
    updated_at = :now
WHERE id = :id AND status = 'queued'
RETURNING *;

-- name: request_cancel
UPDATE content_jobs
SET cancel_requested = 1
WHERE id = :id AND status = 'running'
RETURNING *;

-- name: retry
UPDATE content_jobs
SET status = 'queued',
    run_at = :now,
    cancel_requested = 0,
    finished_at = NULL,
    max_attempts = max(max_attempts, attempt + 1),
    updated_at = :now
WHERE id = :id AND status IN ('failed', 'cancelled');

-- name: expired_leases
SELECT id FROM content_jobs
WHERE status = 'running'
  AND lease_expires_at <= :expired_before
  AND (:exclude_owner IS NULL OR lease_owner IS NOT :exclude_owner)
ORDER BY lease_expires_at, id
LIMIT :limit;

-- name: reap
-- One expired job: cancelled if a cancel was asked for, else queued again while
-- attempts are left, else failed with :worker_lost.
UPDATE content_jobs
SET status = CASE
        WHEN cancel_requested THEN 'cancelled'
        WHEN attempt < max_attempts THEN 'queued'
        ELSE 'failed'
    END,
    run_at = CASE
        WHEN NOT cancel_requested AND attempt < max_attempts THEN :retry_at
        ELSE run_at
    END,
    finished_at = CASE
        WHEN NOT cancel_requested AND attempt < max_attempts THEN NULL
        ELSE :now
    END,
    error_message = CASE WHEN cancel_requested THEN 'cancelled' ELSE :worker_lost END,
    error_type = CASE WHEN cancel_requested THEN NULL ELSE :worker_lost_type END,
    error_traceback = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE id = :id AND status = 'running'
RETURNING *;

-- name: events_after_all
SELECT id, type, job_id, company_id, payload, created_at FROM content_job_events
WHERE id > :after_id
ORDER BY id
LIMIT :limit;

-- name: events_after_company
SELECT id, type, job_id, company_id, payload, created_at FROM content_job_events
WHERE company_id = :company_id AND id > :after_id
ORDER BY id
LIMIT :limit;

-- name: events_after_job
SELECT id, type, job_id, company_id, payload, created_at FROM content_job_events
WHERE job_id = :job_id AND id > :after_id
  AND (:company_id IS NULL OR company_id = :company_id)
ORDER BY id
LIMIT :limit;

-- name: latest_event
SELECT id, type, job_id, company_id, payload, created_at FROM content_job_events
WHERE job_id = :job_id
ORDER BY id DESC
LIMIT 1;

-- name: last_event_id
SELECT coalesce(max(id), 0) FROM content_job_events;

-- name: pruned_through
SELECT pruned_through FROM event_log_state;

-- name: raise_pruned_through
UPDATE event_log_state SET pruned_through = max(pruned_through, :id);

-- name: prune_events
-- Old events go, but every job keeps its latest one: a job's stream starts from it.
DELETE FROM content_job_events
WHERE id IN (
    SELECT e.id FROM content_job_events AS e
    WHERE e.created_at < :before
      AND e.id < (SELECT max(l.id) FROM content_job_events AS l WHERE l.job_id = e.job_id)
    ORDER BY e.id
    LIMIT :limit
)
RETURNING id;

-- name: prunable_jobs
-- Finished jobs past the retention, oldest first. INDEXED BY: left to itself, the
-- planner (without statistics) reads every finished job through content_jobs_status
-- and sorts them; the WHERE repeats the index's word for word, as it must.
SELECT id FROM content_jobs INDEXED BY content_jobs_finished
WHERE (status = 'done' OR status = 'failed' OR status = 'cancelled') AND finished_at < :before
ORDER BY finished_at
LIMIT :limit;

-- name: count_prunable_jobs
SELECT count(*) FROM content_jobs INDEXED BY content_jobs_finished
WHERE (status = 'done' OR status = 'failed' OR status = 'cancelled') AND finished_at < :before;

-- name: prune_job_events
-- The events of the jobs being pruned (:ids, a JSON array), by content_job_events_job.
DELETE FROM content_job_events
WHERE job_id IN (SELECT value FROM json_each(:ids))
RETURNING id;

-- name: prune_jobs
-- Their assets' created_by_job_id becomes NULL (ON DELETE SET NULL): the rows and
-- files stay, the company's own.
DELETE FROM content_jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: insert_token
INSERT INTO api_tokens (id, company_id, label, prefix, hash, created_at, revoked_at)
VALUES (:id, :company_id, :label, :prefix, :hash, :created_at, :revoked_at)
RETURNING *;

-- name: find_tokens
SELECT * FROM api_tokens WHERE prefix = :prefix;

-- name: list_company_tokens
SELECT * FROM api_tokens WHERE company_id = :company_id ORDER BY created_at, rowid;

-- name: list_operator_tokens
SELECT * FROM api_tokens WHERE company_id IS NULL ORDER BY created_at, rowid;

-- name: revoke_token
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, :now)
WHERE id = :id AND company_id IS :company_id
RETURNING *;

-- name: count_by_type_and_status
SELECT job_type, status, count(*) FROM content_jobs GROUP BY job_type, status;

-- name: insert_asset
INSERT INTO assets (
    id, company_id, namespace, object_key, content_type, byte_size, sha256,
    original_filename, source_task_id, created_by_job_id, created_at
) VALUES (
    :id, :company_id, :namespace, :object_key, :content_type, :byte_size, :sha256,
    :original_filename, :source_task_id, :created_by_job_id, :created_at
)
RETURNING *;

-- name: get_asset
SELECT * FROM assets WHERE id = :id;

-- name: list_assets
SELECT * FROM assets
WHERE company_id = :company_id
  AND (:created_by_job_id IS NULL OR created_by_job_id = :created_by_job_id)
  AND (:after_created_at IS NULL OR (created_at, id) < (:after_created_at, :after_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_assets_of_task
-- A plain equality on source_task_id, so the assets_source_task index answers it
-- (with "(:x IS NULL OR ...)" the planner walks every asset of the company instead).
SELECT * FROM assets
WHERE company_id = :company_id
  AND source_task_id = :source_task_id
  AND (:created_by_job_id IS NULL OR created_by_job_id = :created_by_job_id)
  AND (:after_created_at IS NULL OR (created_at, id) < (:after_created_at, :after_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_all_assets
-- Every company's assets by id, a page at a time (`storage copy`); the primary key
-- answers both this and the next, which starts after the last page's id (two
-- statements: "(:after IS NULL OR id > :after)" would scan the index from its start).
SELECT * FROM assets ORDER BY id LIMIT :limit;

-- name: list_all_assets_after
SELECT * FROM assets WHERE id > :after ORDER BY id LIMIT :limit;

-- name: existing_asset_keys
-- :object_keys is a JSON array; the UNIQUE index on object_key answers each one.
SELECT object_key FROM assets
WHERE object_key IN (SELECT value FROM json_each(:object_keys));

-- name: forget_nodes_before
DELETE FROM callboard_nodes WHERE last_seen < :forget_before;

-- name: announce_node
INSERT INTO callboard_nodes (node_id, host, pid, started_at, storage_url, job_types, last_seen)
VALUES (:node_id, :host, :pid, :started_at, :storage_url, :job_types, :now)
ON CONFLICT (node_id) DO UPDATE SET
    host = excluded.host,
    pid = excluded.pid,
    started_at = excluded.started_at,
    storage_url = excluded.storage_url,
    job_types = excluded.job_types,
    last_seen = excluded.last_seen;

-- name: live_nodes
SELECT * FROM callboard_nodes WHERE last_seen >= :since ORDER BY started_at, node_id;

-- name: forget_node
DELETE FROM callboard_nodes WHERE node_id = :node_id;
