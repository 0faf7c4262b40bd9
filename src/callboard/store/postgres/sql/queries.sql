-- Named queries of the PostgreSQL store, loaded once by callboard.store.queries.
-- Each block starts with "-- name: <name>" and holds one statement with $n
-- parameters (asyncpg). Lists come in as arrays and are read with unnest() or
-- = ANY(), so no SQL is ever built by formatting strings.
--
-- A state change is ONE statement: the job rows change in a CTE whose RETURNING
-- also renders each event's payload, then callboard_append_events() appends the
-- events (taking the event id lock last) and the statement runs as its own
-- transaction: one round trip per transition, or per batch of them.

-- name: ping
SELECT 1;

-- name: advisory_lock
SELECT pg_advisory_lock($1::bigint);

-- name: advisory_unlock
SELECT pg_advisory_unlock($1::bigint);

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: schema_version_exists
SELECT to_regclass('schema_version') IS NOT NULL;

-- name: applied_versions
SELECT version FROM schema_version ORDER BY version;

-- name: record_migration
INSERT INTO schema_version (version, name) VALUES ($1, $2);

-- name: insert_company
INSERT INTO companies (id, name, created_at)
VALUES ($1, $2, $3)
RETURNING id, name, created_at, max_running;

-- name: announce_node
-- The node is alive ($7: now by its clock); rows last seen before $8 go (nodes that
-- were killed, not stopped), and so do an older callboard's rows not seen for an hour.
-- Its own row is left to the upsert: a statement must not change a row twice.
WITH gone AS (
    DELETE FROM callboard_nodes
    WHERE node_id <> $1
      AND (last_seen < $8 OR (last_seen IS NULL AND seen_at < now() - interval '1 hour'))
)
INSERT INTO callboard_nodes (
    node_id, seen_at, host, pid, started_at, storage_url, job_types, last_seen
) VALUES ($1, now(), $2, $3, $4, $5, $6, $7)
ON CONFLICT (node_id) DO UPDATE SET
    seen_at = excluded.seen_at,
    host = excluded.host,
    pid = excluded.pid,
    started_at = excluded.started_at,
    storage_url = excluded.storage_url,
    job_types = excluded.job_types,
    last_seen = excluded.last_seen;

-- name: live_nodes
SELECT * FROM callboard_nodes WHERE last_seen >= $1 ORDER BY started_at, node_id COLLATE "C";

-- name: forget_node
DELETE FROM callboard_nodes WHERE node_id = $1;

-- name: get_company
SELECT id, name, created_at, max_running FROM companies WHERE id = $1;

-- name: get_company_by_name
SELECT id, name, created_at, max_running FROM companies WHERE name = $1;

-- name: list_companies
SELECT id, name, created_at, max_running FROM companies ORDER BY created_at, seq;

-- name: missing_companies
SELECT c.id FROM unnest($1::text[]) AS c (id)
WHERE NOT EXISTS (SELECT 1 FROM companies WHERE companies.id = c.id);

-- name: get_job
SELECT * FROM content_jobs WHERE id = $1;

-- name: jobs_by_idempotency_key
SELECT * FROM content_jobs
WHERE (company_id, idempotency_key) IN (
    SELECT * FROM unnest($1::text[], $2::text[])
);

-- name: insert_jobs
-- Arrays in submit order. A job whose (company, idempotency key) exists already,
-- or appears earlier in the batch, is skipped (the caller looks it up).
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::integer[],
        $7::double precision[], $8::timestamptz[], $9::text[], $10::text[]
    ) WITH ORDINALITY AS i (
        id, company_id, job_type, priority, input, max_attempts,
        timeout_seconds, run_at, source_task_id, idempotency_key, ord
    )
),
inserted AS (
    INSERT INTO content_jobs AS j (
        id, company_id, job_type, status, priority, input, max_attempts,
        timeout_seconds, run_at, source_task_id, idempotency_key, created_at, updated_at
    )
    SELECT id, company_id, job_type, 'queued', priority, input::json, max_attempts,
           timeout_seconds, run_at, source_task_id, idempotency_key, $11, $11
    FROM input ORDER BY ord
    ON CONFLICT (company_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING j.*, callboard_job_payload(j) AS payload
),
ordered AS (
    SELECT inserted.*, row_number() OVER (ORDER BY input.ord) AS event_ord, input.ord AS input_ord
    FROM inserted JOIN input ON input.id = inserted.id
),
appended AS (
    SELECT callboard_append_events(
        array_agg(id ORDER BY event_ord), array_agg(company_id ORDER BY event_ord),
        array_agg('content_job.queued'::text ORDER BY event_ord), array_agg(payload ORDER BY event_ord),
        array_agg($11::timestamptz ORDER BY event_ord)
    ) AS last_id, count(*) AS n
    FROM ordered
)
SELECT ordered.*, appended.last_id - appended.n + ordered.event_ord AS event_id
FROM ordered, appended
ORDER BY ordered.event_ord;

-- name: insert_running
-- One job inserted straight into running, claimed by this node ($12 lease owner,
-- $13 expiry), with its queued event ($14: its payload as queued, rendered by the
-- node) and its running event: only when it is runnable now ($11) and no queued
-- runnable job of its type has the same or a higher priority (it would overtake
-- it; the partial index content_jobs_claim answers this) and its company has no
-- cap. Otherwise, and when its
-- idempotency key exists, nothing is written and no row comes back.
WITH inserted AS (
    INSERT INTO content_jobs AS j (
        id, company_id, job_type, status, priority, input, max_attempts,
        timeout_seconds, run_at, source_task_id, idempotency_key, created_at, updated_at,
        attempt, started_at, lease_owner, lease_expires_at
    )
    SELECT $1, $2, $3, 'running', $4, $5::json, $6, $7, $8, $9, $10, $11, $11, 1, $11, $12, $13
    WHERE $8::timestamptz <= $11::timestamptz AND NOT EXISTS (
        SELECT 1 FROM content_jobs AS q
        WHERE q.job_type = $3 AND q.status = 'queued' AND q.run_at <= $11 AND q.priority >= $4
    ) AND NOT EXISTS (
        -- A capped company's running jobs are counted by the claim only, under its lock.
        SELECT 1 FROM companies AS c WHERE c.id = $2 AND c.max_running IS NOT NULL
    )
    ON CONFLICT (company_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING j.*, callboard_job_payload(j) AS payload
),
appended AS (
    SELECT callboard_append_events(
        ARRAY[id, id], ARRAY[company_id, company_id],
        ARRAY['content_job.queued', 'content_job.running'], ARRAY[$14::text, payload],
        ARRAY[$11, $11]::timestamptz[]
    ) AS last_id
    FROM inserted
)
SELECT inserted.*, appended.last_id AS event_id FROM inserted, appended;

-- name: list_jobs
SELECT * FROM content_jobs
WHERE ($1::text IS NULL OR company_id = $1)
  AND ($2::text IS NULL OR job_type = $2)
  AND ($3::text IS NULL OR source_task_id = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7::text))
ORDER BY created_at DESC, id DESC
LIMIT $8;

-- name: list_jobs_status
-- One status ($9) of every company ($1 is NULL), by content_jobs_status: a few queued
-- jobs are found at once under millions of finished ones. Several statuses are
-- merged by the caller.
SELECT * FROM content_jobs
WHERE status = $9
  AND ($1::text IS NULL OR company_id = $1)
  AND ($2::text IS NULL OR job_type = $2)
  AND ($3::text IS NULL OR source_task_id = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7::text))
ORDER BY created_at DESC, id DESC
LIMIT $8;

-- name: list_jobs_company_status
-- One status ($9) of one company, by content_jobs_company_status. Apart from the
-- query above so that a prepared statement's generic plan never reads a small
-- company's jobs out of every company's.
SELECT * FROM content_jobs
WHERE company_id = $1 AND status = $9
  AND ($2::text IS NULL OR job_type = $2)
  AND ($3::text IS NULL OR source_task_id = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7::text))
ORDER BY created_at DESC, id DESC
LIMIT $8;

-- name: count_by_status
SELECT status, count(*) FROM content_jobs
WHERE ($1::text IS NULL OR company_id = $1)
  AND ($2::text IS NULL OR job_type = $2)
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::timestamptz IS NULL OR created_at < $4)
GROUP BY status;

-- name: count_by_type_and_status
SELECT job_type, status, count(*) FROM content_jobs GROUP BY job_type, status;

-- name: count_queued
SELECT count(*) FROM (
    SELECT 1 FROM content_jobs WHERE status = 'queued' AND run_at <= $1 LIMIT $2
) AS due;

-- name: next_run_at
SELECT min(run_at) FROM content_jobs
WHERE status = 'queued' AND job_type = ANY($1::text[]);

-- name: claim
-- $1 job types, $2 their caps (NULL: no cap), $3 limit, $4 now, $5 lease owner,
-- $6 lease expiry: callboard_claim (in schema.sql) takes the jobs, fair between
-- companies, and appends their events; here they come back in claim order.
SELECT (c.job).*, c.payload, c.event_id
FROM callboard_claim($1::text[], $2::integer[], $3::integer, $4, $5, $6) AS c
ORDER BY c.event_id;

-- name: set_company_max_running
UPDATE companies SET max_running = $2 WHERE id = $1
RETURNING id, name, created_at, max_running;

-- name: count_by_company
-- Running and queued jobs by company, from the two partial indexes that lead with
-- company_id, never a walk of the finished jobs.
SELECT company_id, sum(running)::bigint AS running, sum(queued)::bigint AS queued FROM (
    SELECT company_id, count(*) AS running, 0 AS queued FROM content_jobs
    WHERE status = 'running' GROUP BY company_id
    UNION ALL
    SELECT company_id, 0, count(*) FROM content_jobs
    WHERE status = 'queued' GROUP BY company_id
) AS counts
GROUP BY company_id
ORDER BY company_id;

-- name: claimed_at
-- The jobs one claim of this node took ($1 lease owner, $2 the claim's time), with
-- their running events: for a claim whose answer was lost after it committed.
SELECT j.*, e.id AS event_id
FROM content_jobs AS j
JOIN content_job_events AS e
    ON e.job_id = j.id AND e.type = 'content_job.running' AND e.created_at = $2
WHERE j.status = 'running' AND j.lease_owner = $1 AND j.started_at = $2
ORDER BY e.id;

-- name: renew_leases
-- Rows are locked in id order, as complete_many locks them, so a renewal and a
-- batch of completions of the same node cannot deadlock.
WITH held AS (
    SELECT id FROM content_jobs
    WHERE id = ANY($1::text[]) AND status = 'running' AND lease_owner = $2
    ORDER BY id
    FOR UPDATE
)
UPDATE content_jobs AS j
SET lease_expires_at = $3
FROM held
WHERE j.id = held.id AND j.status = 'running' AND j.lease_owner = $2
RETURNING j.id, j.cancel_requested;

-- name: record_progress
WITH changed AS (
    UPDATE content_jobs AS j
    SET progress_percent = $3, progress_message = $4, updated_at = $5
    WHERE j.id = $1 AND j.status = 'running' AND j.lease_owner = $2
    RETURNING j.*, callboard_job_payload(j) AS payload
),
appended AS (
    SELECT callboard_append_events(
        array_agg(id), array_agg(company_id), array_agg('content_job.progress'::text),
        array_agg(payload), array_agg($5::timestamptz)
    ) AS last_id
    FROM changed
)
SELECT changed.*, appended.last_id AS event_id FROM changed, appended;

-- name: complete_many
-- A batch of completions: $1 job ids (ascending: rows are then locked in id order,
-- as renew_leases locks them, so the two cannot deadlock), $2 lease owners, $3
-- result asset ids, $4 times, $5 results (JSON text or NULL). A job whose lease is
-- lost is left out.
WITH finished AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
        WITH ORDINALITY AS f (id, lease_owner, result_asset_id, at, result, ord)
),
changed AS (
    UPDATE content_jobs AS j
    SET status = 'done',
        progress_percent = 100,
        finished_at = f.at,
        lease_owner = NULL,
        lease_expires_at = NULL,
        error_message = NULL,
        error_type = NULL,
        error_traceback = NULL,
        result_asset_id = coalesce(f.result_asset_id, j.result_asset_id),
        result = f.result::json,
        updated_at = f.at
    FROM finished AS f
    WHERE j.id = f.id AND j.status = 'running' AND j.lease_owner = f.lease_owner
    RETURNING j.*, callboard_job_payload(j) AS payload, f.ord, f.at
),
appended AS (
    SELECT callboard_append_events(
        array_agg(id ORDER BY ord), array_agg(company_id ORDER BY ord),
        array_agg('content_job.done'::text ORDER BY ord), array_agg(payload ORDER BY ord),
        array_agg(at ORDER BY ord)
    ) AS last_id, count(*) AS n
    FROM changed
)
SELECT changed.*, appended.last_id - appended.n
       + row_number() OVER (ORDER BY changed.ord) AS event_id
FROM changed, appended
ORDER BY changed.ord;

-- name: lock_running_job
SELECT company_id FROM content_jobs
WHERE id = $1 AND status = 'running' AND lease_owner = $2
FOR UPDATE;

-- name: fail
-- $3 now, $4 error message, $5 retry time or NULL, $6 error type, $7 traceback. A job asked to stop ends
-- cancelled instead; with a retry time it is queued again, else failed.
WITH changed AS (
    UPDATE content_jobs AS j
    SET status = CASE
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN $5::timestamptz IS NULL THEN 'failed'
            ELSE 'queued'
        END,
        run_at = CASE
            WHEN NOT j.cancel_requested AND $5::timestamptz IS NOT NULL THEN $5
            ELSE j.run_at
        END,
        finished_at = CASE
            WHEN j.cancel_requested OR $5::timestamptz IS NULL THEN $3::timestamptz
            ELSE j.finished_at
        END,
        error_message = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE $4::text END,
        error_type = CASE WHEN j.cancel_requested THEN NULL ELSE $6::text END,
        error_traceback = CASE WHEN j.cancel_requested THEN NULL ELSE $7::text END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        updated_at = $3
    WHERE j.id = $1 AND j.status = 'running' AND j.lease_owner = $2
    RETURNING j.*, callboard_job_payload(j) AS payload,
        CASE j.status
            WHEN 'cancelled' THEN 'content_job.cancelled'
            WHEN 'queued' THEN 'content_job.retrying'
            ELSE 'content_job.failed'
        END AS event_type
),
appended AS (
    SELECT callboard_append_events(
        array_agg(id), array_agg(company_id), array_agg(event_type),
        array_agg(payload), array_agg($3::timestamptz)
    ) AS last_id
    FROM changed
)
SELECT changed.*, appended.last_id AS event_id FROM changed, appended;

-- name: mark_cancelled
WITH changed AS (
    UPDATE content_jobs AS j
    SET status = 'cancelled',
        finished_at = $3,
        error_message = 'cancelled',
        error_type = NULL,
        error_traceback = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        updated_at = $3
    WHERE j.id = $1 AND j.status = 'running' AND j.lease_owner = $2
    RETURNING j.*, callboard_job_payload(j) AS payload
),
appended AS (
    SELECT callboard_append_events(
        array_agg(id), array_agg(company_id), array_agg('content_job.cancelled'::text),
        array_agg(payload), array_agg($3::timestamptz)
    ) AS last_id
    FROM changed
)
SELECT changed.*, appended.last_id AS event_id FROM changed, appended;

-- name: cancel_queued
WITH changed AS (
    UPDATE content_jobs AS j
    SET status = 'cancelled',
        finished_at = $2,
        error_message = 'cancelled',
        error_type = NULL,
        error_traceback = NULL,
        updated_at = $2
    WHERE j.id = $1 AND j.status = 'queued'
    RETURNING j.*, callboard_job_payload(j) AS payload
),
appended AS (
    SELECT callboard_append_events(
        array_agg(id), array_agg(company_id), array_agg('content_job.cancelled'::text),
        array_agg(payload), array_agg($2::timestamptz)
    ) AS last_id
    FROM changed
)
SELECT changed.*, appended.last_id AS event_id FROM changed, appended;

-- name: request_cancel
-- A running job is only marked; its lease holder stops it. The notification
-- reaches that node at once (its next lease renewal would find the mark too).
UPDATE content_jobs AS j
SET cancel_requested = true
WHERE j.id = $1 AND j.status = 'running'
RETURNING j.*, pg_notify('callboard_cancel', j.id)::text AS notified;

-- name: retry
WITH changed AS (
    UPDATE content_jobs AS j
    SET status = 'queued',
        run_at = $2,
        cancel_requested = false,
        finished_at = NULL,
        max_attempts = greatest(j.max_attempts, j.attempt + 1),
        updated_at = $2
    WHERE j.id = $1 AND j.status IN ('failed', 'cancelled')
    RETURNING j.*, callboard_job_payload(j) AS payload
),
appended AS (
    SELECT callboard_append_events(
        array_agg(id), array_agg(company_id), array_agg('content_job.queued'::text),
        array_agg(payload), array_agg($2::timestamptz)
    ) AS last_id
    FROM changed
)
SELECT changed.*, appended.last_id AS event_id FROM changed, appended;

-- name: reap
-- $1 now, $2 expired before, $3 retry at, $4 owner to skip or NULL, $5 limit,
-- $6 the "worker lost" message, $7 its error type. Oldest lease first; rows another
-- transaction holds (their owner is finishing them) are skipped.
WITH expired AS (
    SELECT id, lease_expires_at,
           row_number() OVER (ORDER BY lease_expires_at, id) AS event_ord
    FROM (
        SELECT id, lease_expires_at FROM content_jobs
        WHERE status = 'running' AND lease_expires_at <= $2
          AND ($4::text IS NULL OR lease_owner IS DISTINCT FROM $4)
        ORDER BY lease_expires_at, id
        LIMIT $5
        FOR UPDATE SKIP LOCKED
    ) AS e
),
changed AS (
    UPDATE content_jobs AS j
    SET status = CASE
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN j.attempt < j.max_attempts THEN 'queued'
            ELSE 'failed'
        END,
        run_at = CASE
            WHEN NOT j.cancel_requested AND j.attempt < j.max_attempts THEN $3::timestamptz
            ELSE j.run_at
        END,
        finished_at = CASE
            WHEN NOT j.cancel_requested AND j.attempt < j.max_attempts THEN NULL
            ELSE $1::timestamptz
        END,
        error_message = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE $6::text END,
        error_type = CASE WHEN j.cancel_requested THEN NULL ELSE $7::text END,
        error_traceback = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        updated_at = $1
    FROM expired
    WHERE j.id = expired.id AND j.status = 'running'
    RETURNING j.*, callboard_job_payload(j) AS payload, expired.event_ord,
        CASE j.status
            WHEN 'cancelled' THEN 'content_job.cancelled'
            WHEN 'queued' THEN 'content_job.retrying'
            ELSE 'content_job.failed'
        END AS event_type
),
appended AS (
    SELECT callboard_append_events(
        array_agg(id ORDER BY event_ord), array_agg(company_id ORDER BY event_ord),
        array_agg(event_type ORDER BY event_ord), array_agg(payload ORDER BY event_ord),
        array_agg($1::timestamptz ORDER BY event_ord)
    ) AS last_id, count(*) AS n
    FROM changed
)
SELECT changed.*, appended.last_id - appended.n
       + row_number() OVER (ORDER BY changed.event_ord) AS event_id
FROM changed, appended
ORDER BY changed.event_ord;

-- name: events_after
SELECT id, type, job_id, company_id, payload, created_at FROM content_job_events
WHERE id > $1
  AND ($2::text IS NULL OR company_id = $2)
  AND ($3::text IS NULL OR job_id = $3)
ORDER BY id
LIMIT $4;

-- name: events_after_all
-- The broker's catch-up: every event after an id, up to an id known to exist.
SELECT id, type, job_id, company_id, payload, created_at FROM content_job_events
WHERE id > $1 AND id <= $2
ORDER BY id
LIMIT $3;

-- name: latest_event
SELECT id, type, job_id, company_id, payload, created_at FROM content_job_events
WHERE job_id = $1
ORDER BY id DESC
LIMIT 1;

-- name: last_event_id
SELECT last_id FROM event_log_state;

-- name: pruned_through
SELECT pruned_through FROM event_prune_state;

-- name: prune_events
-- Old events go, oldest first, but every job keeps its latest one: a job's stream
-- starts from it. Returns how many went.
WITH gone AS (
    DELETE FROM content_job_events
    WHERE id IN (
        SELECT e.id FROM content_job_events AS e
        WHERE e.created_at < $1
          AND e.id < (SELECT max(l.id) FROM content_job_events AS l WHERE l.job_id = e.job_id)
        ORDER BY e.id
        LIMIT $2
    )
    RETURNING id
),
raised AS (
    UPDATE event_prune_state
    SET pruned_through = greatest(pruned_through, (SELECT max(id) FROM gone))
    WHERE EXISTS (SELECT 1 FROM gone)
)
SELECT count(*) FROM gone;

-- name: prune_jobs
-- Finished jobs past the retention, oldest first (content_jobs_finished), with their
-- events; pruned_through rises to the highest event id deleted. Their assets'
-- created_by_job_id becomes NULL (ON DELETE SET NULL): the rows and files stay.
-- SKIP LOCKED: nodes pruning at once take different jobs. Returns how many went.
WITH doomed AS (
    SELECT id FROM content_jobs
    WHERE status IN ('done', 'failed', 'cancelled') AND finished_at < $1
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
events AS (
    DELETE FROM content_job_events WHERE job_id IN (SELECT id FROM doomed)
    RETURNING id
),
raised AS (
    UPDATE event_prune_state
    SET pruned_through = greatest(pruned_through, (SELECT max(id) FROM events))
    WHERE EXISTS (SELECT 1 FROM events)
),
gone AS (
    DELETE FROM content_jobs WHERE id IN (SELECT id FROM doomed)
    RETURNING id
)
SELECT count(*) FROM gone;

-- name: count_prunable_jobs
SELECT count(*) FROM content_jobs
WHERE status IN ('done', 'failed', 'cancelled') AND finished_at < $1;

-- name: insert_token
INSERT INTO api_tokens (id, company_id, label, prefix, hash, created_at, revoked_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- name: find_tokens
SELECT * FROM api_tokens WHERE prefix = $1;

-- name: list_company_tokens
SELECT * FROM api_tokens WHERE company_id = $1 ORDER BY created_at, seq;

-- name: list_operator_tokens
SELECT * FROM api_tokens WHERE company_id IS NULL ORDER BY created_at, seq;

-- name: revoke_token
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $3)
WHERE id = $1 AND company_id IS NOT DISTINCT FROM $2::text
RETURNING *;

-- name: insert_assets
INSERT INTO assets (
    id, company_id, namespace, object_key, content_type, byte_size, sha256,
    original_filename, source_task_id, created_by_job_id, created_at
)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
    $8::text[], $9::text[], $10::text[], $11::timestamptz[]
)
RETURNING *;

-- name: get_asset
SELECT * FROM assets WHERE id = $1;

-- name: list_assets
SELECT * FROM assets
WHERE company_id = $1
  AND ($2::text IS NULL OR source_task_id = $2)
  AND ($3::text IS NULL OR created_by_job_id = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::text))
ORDER BY created_at DESC, id DESC
LIMIT $6;

-- name: list_all_assets
-- Every company's assets by id, a page at a time (`storage copy`); the primary key
-- answers both this and the next, which starts after the last page's id (two
-- statements: "($1 IS NULL OR id > $1)" in a generic plan scans the index from its
-- start).
SELECT * FROM assets ORDER BY id LIMIT $1;

-- name: list_all_assets_after
SELECT * FROM assets WHERE id > $1 ORDER BY id LIMIT $2;

-- name: existing_asset_keys
SELECT object_key FROM assets WHERE object_key = ANY($1::text[]);
