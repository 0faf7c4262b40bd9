-- The PostgreSQL schema as it stands after every migration: the source of truth.
-- A migration that changes it must change this file the same way; a test applies
-- the migrations and this file to two empty databases and compares the catalogs.

CREATE TABLE companies (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    -- At most this many of its jobs run at once on all nodes; NULL: no cap.
    max_running integer CHECK (max_running >= 1)
);

CREATE TABLE api_tokens (
    id text PRIMARY KEY,
    company_id text REFERENCES companies (id) ON DELETE CASCADE,
    label text NOT NULL,
    prefix text NOT NULL,
    hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    seq bigint GENERATED ALWAYS AS IDENTITY
);

CREATE INDEX api_tokens_company ON api_tokens (company_id, created_at, seq);

CREATE INDEX api_tokens_prefix ON api_tokens (prefix);

CREATE TABLE content_jobs (
    id text PRIMARY KEY,
    company_id text NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    job_type text NOT NULL,
    status text NOT NULL
        CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    priority integer NOT NULL DEFAULT 0,
    input json NOT NULL,
    progress_percent integer NOT NULL DEFAULT 0
        CHECK (progress_percent BETWEEN 0 AND 100),
    progress_message text,
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 1,
    timeout_seconds double precision,
    run_at timestamptz NOT NULL,
    result_asset_id text,
    error_message text,
    source_task_id text,
    idempotency_key text,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL,
    lease_owner text,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- Insertion order: the last tie-break of the claim order.
    seq bigint GENERATED ALWAYS AS IDENTITY,
    -- What the handler returned (compact JSON, kept as written); set by the done
    -- transition.
    result json,
    -- The schedule that made the job and the tick it was made for.
    schedule_id text,
    scheduled_for timestamptz,
    -- What made the last attempt fail: the exception's type and its traceback (the
    -- tail, at most 16 KiB), or callboard's own ending (Timeout, WorkerLost, ...).
    error_type text,
    error_traceback text
);

-- One job per schedule and tick, whichever node makes it.
CREATE UNIQUE INDEX content_jobs_schedule_tick
    ON content_jobs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;

CREATE UNIQUE INDEX content_jobs_idempotency
    ON content_jobs (company_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Claiming reads each job type's queued jobs in claim order. Partial: millions of
-- finished jobs do not make it bigger or slower.
CREATE INDEX content_jobs_claim
    ON content_jobs (job_type, priority DESC, run_at, created_at, seq)
    WHERE status = 'queued';

CREATE INDEX content_jobs_queued_type
    ON content_jobs (job_type, run_at)
    WHERE status = 'queued';

-- The fair claim reads each company's queued jobs of a type in claim order, and
-- counts each company's running jobs (callboard_claim).
CREATE INDEX content_jobs_fair
    ON content_jobs (company_id, job_type, priority DESC, run_at, created_at, seq)
    WHERE status = 'queued';

CREATE INDEX content_jobs_running_company
    ON content_jobs (company_id)
    WHERE status = 'running';

-- The reaper looks for running jobs by lease expiry.
CREATE INDEX content_jobs_leases
    ON content_jobs (lease_expires_at, id)
    WHERE status = 'running';

-- Lists are newest first, for one company or for all.
CREATE INDEX content_jobs_company_created
    ON content_jobs (company_id, created_at DESC, id DESC);

CREATE INDEX content_jobs_created
    ON content_jobs (created_at DESC, id DESC);

CREATE INDEX content_jobs_source_task
    ON content_jobs (company_id, source_task_id, created_at DESC, id DESC)
    WHERE source_task_id IS NOT NULL;

-- Retention deletes finished jobs oldest finished first.
CREATE INDEX content_jobs_finished
    ON content_jobs (finished_at)
    WHERE status IN ('done', 'failed', 'cancelled');

-- A list of one status reads that status's jobs newest first, for one company or for
-- all, instead of filtering every job newest first.
CREATE INDEX content_jobs_company_status
    ON content_jobs (company_id, status, created_at DESC, id DESC);

CREATE INDEX content_jobs_status
    ON content_jobs (status, created_at DESC, id DESC);

-- Event ids are not a sequence: callboard_append_events() hands them out from
-- event_log_state.last_id, whose row lock is held until the transaction commits.
-- So ids become visible in id order and without gaps, on every node: a reader
-- that has seen id N has seen everything below N (a bigserial would let a lower
-- id commit after a higher one, and "events after N" would skip it for ever).
CREATE TABLE content_job_events (
    id bigint PRIMARY KEY,
    job_id text NOT NULL REFERENCES content_jobs (id) ON DELETE CASCADE,
    company_id text NOT NULL,
    type text NOT NULL,
    payload text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX content_job_events_job ON content_job_events (job_id, id);

CREATE INDEX content_job_events_company ON content_job_events (company_id, id);

CREATE INDEX content_job_events_created ON content_job_events (created_at);

-- One row: the last event id handed out.
CREATE TABLE event_log_state (
    singleton boolean PRIMARY KEY CHECK (singleton),
    last_id bigint NOT NULL
);

INSERT INTO event_log_state (singleton, last_id) VALUES (true, 0);

-- One row: the highest event id ever pruned (SSE stream.gap). Apart from
-- event_log_state so a prune never waits for the event id lock.
CREATE TABLE event_prune_state (
    singleton boolean PRIMARY KEY CHECK (singleton),
    pruned_through bigint NOT NULL
);

INSERT INTO event_prune_state (singleton, pruned_through) VALUES (true, 0);

-- The nodes sharing this database (every running node refreshes its row every 5 s
-- and deletes it when it stops, actors/presence.py): while one is alone, its commits
-- notify nobody (see callboard_append_events), and a node that keeps assets on its
-- own disk warns when there are others. seen_at is on the database's clock (what
-- callboard_append_events compares), last_seen on the node's (what live_nodes
-- compares). The other columns are NULL only for a node of a callboard older than
-- migration 4, which refreshes seen_at alone.
CREATE TABLE callboard_nodes (
    node_id text PRIMARY KEY,
    seen_at timestamptz NOT NULL,
    host text,
    pid integer,
    started_at timestamptz,
    storage_url text,
    job_types text, -- a JSON array of strings
    last_seen timestamptz
);

CREATE TABLE assets (
    id text PRIMARY KEY,
    company_id text NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    namespace text NOT NULL,
    object_key text NOT NULL UNIQUE,
    content_type text NOT NULL,
    byte_size bigint NOT NULL CHECK (byte_size >= 0),
    sha256 text NOT NULL,
    original_filename text NOT NULL,
    source_task_id text,
    created_by_job_id text REFERENCES content_jobs (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX assets_company_created ON assets (company_id, created_at DESC, id DESC);

CREATE INDEX assets_source_task
    ON assets (company_id, source_task_id, created_at DESC, id DESC)
    WHERE source_task_id IS NOT NULL;

CREATE INDEX assets_job ON assets (created_by_job_id) WHERE created_by_job_id IS NOT NULL;

-- Schedules make ordinary jobs at their ticks (actors/scheduler.py). revision
-- increases with every change, so a write made from an older read changes nothing.
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

-- A time as callboard.jobs.iso() writes it: UTC, microseconds, a trailing Z.
CREATE FUNCTION callboard_iso(ts timestamptz) RETURNS text
LANGUAGE sql STABLE
RETURN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

-- An event's payload: the job as Job.to_dict() gives it (no lease fields).
CREATE FUNCTION callboard_job_payload(j content_jobs) RETURNS text
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

-- Append events (arrays in event order) and return the last id given out, 0 for
-- none. Called last in a statement, after its job rows are changed (and locked):
-- the event id lock is then taken last and held only to commit, so two writers
-- cannot deadlock on it. Notifies the other nodes of the new head, when there are
-- any (callboard_nodes): a node's own commits reach its broker without one; and,
-- before it, of queued work (callboard_queued), so their dispatchers claim at once.
CREATE FUNCTION callboard_append_events(
    job_ids text[], company_ids text[], types text[], payloads text[], created_ats timestamptz[]
) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    n integer := coalesce(cardinality(job_ids), 0);
    last bigint;
    others boolean;
BEGIN
    IF n = 0 THEN
        RETURN 0;
    END IF;
    -- Looked up before the event id lock is taken, so no writer waits on it.
    others := (
        SELECT count(*) FROM callboard_nodes WHERE seen_at > now() - interval '15 seconds'
    ) > 1;
    UPDATE event_log_state SET last_id = last_id + n RETURNING last_id INTO last;
    INSERT INTO content_job_events (id, job_id, company_id, type, payload, created_at)
    SELECT last - n + e.ord, e.job_id, e.company_id, e.type, e.payload, e.created_at
    FROM unnest(job_ids, company_ids, types, payloads, created_ats)
        WITH ORDINALITY AS e (job_id, company_id, type, payload, created_at, ord);
    IF others THEN
        -- Work to claim first, on its own channel: worker nodes wake their dispatcher
        -- on it at once, without reading the events (older nodes do not listen to it).
        -- Not for a job inserted straight into running (insert_running).
        IF types && ARRAY['content_job.queued', 'content_job.retrying']
           AND NOT 'content_job.running' = ANY(types) THEN
            PERFORM pg_notify('callboard_queued', last::text);
        END IF;
        PERFORM pg_notify('callboard_events', last::text);
    END IF;
    RETURN last;
END
$$;

-- The claim, fair between companies (JobStore.claim): a function, so that it runs
-- its statements in one round trip; see its comments. Its plans must not depend on
-- the planner's row guesses, since PL/pgSQL keeps the plan made at a node's first
-- claims, often on an empty queue. It runs with sorts and sequential scans disabled:
-- every way to its reads of the queue other than content_jobs_fair, and to the jobs
-- it updates other than the primary key, needs one or the other. Bitmap scans are off
-- too: they never mark an index entry dead, so a count of running jobs by one read
-- every job run since the last vacuum.
CREATE FUNCTION callboard_claim(
    job_types text[], type_caps integer[], max_jobs integer, at timestamptz,
    owner text, expires timestamptz
) RETURNS TABLE (job content_jobs, payload text, event_id bigint)
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
BEGIN
    -- The companies with a cap that have runnable jobs of these types are locked in
    -- id order (two claims never deadlock on them): claims that may take their jobs
    -- take turns, and the statement below, in a snapshot taken after these locks,
    -- sees the running jobs the claims before it committed. FOR NO KEY UPDATE:
    -- submits (the foreign key's KEY SHARE lock) do not wait on it.
    -- OFFSET 0 keeps the EXISTS a probe per capped company: as a join, the planner
    -- may read every queued job of every company first (on a table without
    -- statistics yet it did, at each claim).
    PERFORM 1 FROM companies AS c
    WHERE c.max_running IS NOT NULL AND EXISTS (
        SELECT 1 FROM content_jobs AS q
        WHERE q.company_id = c.id AND q.job_type = ANY(job_types)
          AND q.status = 'queued' AND q.run_at <= at
        OFFSET 0
    )
    ORDER BY c.id
    FOR NO KEY UPDATE OF c;

    -- pairs: every (company, type) with queued jobs, one index descent each (a skip
    -- scan of content_jobs_fair), so idle companies cost nothing. heads: each
    -- runnable pair's first jobs in claim order, read without locks. A pair is
    -- matched by two row comparisons, not two equalities: only content_jobs_fair
    -- (company, type, claim order) can use them, where with equalities the planner
    -- may walk the type's whole queue in content_jobs_claim to find one company's.
    -- Each company's heads are ranked on top of its running count (its load); those
    -- at or past the company's cap are dropped, then those past their type's cap,
    -- and the best max_jobs kept (picked), by priority, load, then age. locked
    -- takes as many of each pair's jobs as were picked, skipping those another
    -- claim holds, so two nodes claiming at once take different jobs of the same
    -- companies; they start (and their events come) in the fair order. changed finds
    -- them by their ids alone, not checked to be queued again (the lock on them has
    -- held since locked read them queued), so that the primary key is its one plan.
    RETURN QUERY
    WITH RECURSIVE pairs AS (
        (
            SELECT j.company_id, j.job_type FROM content_jobs AS j
            WHERE j.status = 'queued'
            ORDER BY j.company_id, j.job_type
            LIMIT 1
        )
        UNION ALL
        SELECT n.company_id, n.job_type FROM pairs AS p CROSS JOIN LATERAL (
            SELECT j.company_id, j.job_type FROM content_jobs AS j
            WHERE j.status = 'queued' AND (j.company_id, j.job_type) > (p.company_id, p.job_type)
            ORDER BY j.company_id, j.job_type
            LIMIT 1
        ) AS n
    ),
    caps AS (
        SELECT * FROM unnest(job_types, type_caps) AS t (job_type, cap)
    ),
    busy AS (
        SELECT r.company_id, count(*) AS n FROM content_jobs AS r
        WHERE r.status = 'running'
        GROUP BY r.company_id
    ),
    fleet AS (
        SELECT p.company_id, p.job_type, caps.cap, c.max_running,
               coalesce(b.n, 0) AS running
        FROM pairs AS p
        JOIN caps ON caps.job_type = p.job_type
        JOIN companies AS c ON c.id = p.company_id
        LEFT JOIN busy AS b ON b.company_id = p.company_id
        WHERE c.max_running IS NULL OR coalesce(b.n, 0) < c.max_running
    ),
    heads AS (
        SELECT k.*, f.job_type, f.cap, f.running, f.max_running
        FROM fleet AS f CROSS JOIN LATERAL (
            SELECT j.id, j.company_id, j.priority, j.run_at, j.created_at, j.seq
            FROM content_jobs AS j
            WHERE (j.company_id, j.job_type) >= (f.company_id, f.job_type)
              AND (j.company_id, j.job_type) <= (f.company_id, f.job_type)
              AND j.status = 'queued' AND j.run_at <= at
            ORDER BY j.company_id, j.job_type, j.priority DESC, j.run_at, j.created_at, j.seq
            LIMIT least(
                coalesce(f.cap, max_jobs), max_jobs,
                coalesce(f.max_running - f.running, max_jobs)
            )
        ) AS k
    ),
    loaded AS (
        SELECT h.*, h.running - 1 + row_number() OVER (
            PARTITION BY h.company_id ORDER BY h.priority DESC, h.run_at, h.created_at, h.seq
        ) AS load
        FROM heads AS h
    ),
    eligible AS (
        SELECT l.*, row_number() OVER (
            PARTITION BY l.job_type ORDER BY l.priority DESC, l.load, l.run_at, l.created_at, l.seq
        ) AS type_rank
        FROM loaded AS l
        WHERE l.max_running IS NULL OR l.load < l.max_running
    ),
    picked AS (
        SELECT e.company_id, e.job_type, min(e.running) AS running, count(*) AS n FROM (
            SELECT e.company_id, e.job_type, e.running FROM eligible AS e
            WHERE e.cap IS NULL OR e.type_rank <= e.cap
            ORDER BY e.priority DESC, e.load, e.run_at, e.created_at, e.seq
            LIMIT max_jobs
        ) AS e
        GROUP BY e.company_id, e.job_type
    ),
    locked AS (
        SELECT k.*, pk.running - 1 + row_number() OVER (
            PARTITION BY k.company_id ORDER BY k.priority DESC, k.run_at, k.created_at, k.seq
        ) AS load
        FROM picked AS pk CROSS JOIN LATERAL (
            SELECT j.id, j.company_id, j.priority, j.run_at, j.created_at, j.seq
            FROM content_jobs AS j
            WHERE (j.company_id, j.job_type) >= (pk.company_id, pk.job_type)
              AND (j.company_id, j.job_type) <= (pk.company_id, pk.job_type)
              AND j.status = 'queued' AND j.run_at <= at
            ORDER BY j.company_id, j.job_type, j.priority DESC, j.run_at, j.created_at, j.seq
            LIMIT pk.n
            FOR UPDATE SKIP LOCKED
        ) AS k
    ),
    taken AS (
        SELECT l.id, row_number() OVER (
            ORDER BY l.priority DESC, l.load, l.run_at, l.created_at, l.seq
        ) AS event_ord
        FROM locked AS l
        LIMIT max_jobs
    ),
    changed AS (
        UPDATE content_jobs AS j
        SET status = 'running',
            attempt = j.attempt + 1,
            started_at = at,
            finished_at = NULL,
            lease_owner = owner,
            lease_expires_at = expires,
            progress_percent = 0,
            progress_message = NULL,
            updated_at = at
        FROM taken
        WHERE j.id = taken.id
        RETURNING j AS row, j.id, j.company_id, callboard_job_payload(j) AS payload,
                  taken.event_ord
    ),
    appended AS (
        SELECT callboard_append_events(
            array_agg(ch.id ORDER BY ch.event_ord), array_agg(ch.company_id ORDER BY ch.event_ord),
            array_agg('content_job.running'::text ORDER BY ch.event_ord),
            array_agg(ch.payload ORDER BY ch.event_ord), array_agg(at ORDER BY ch.event_ord)
        ) AS last_id, count(*) AS n
        FROM changed AS ch
    )
    SELECT ch.row, ch.payload, a.last_id - a.n + row_number() OVER (ORDER BY ch.event_ord)
    FROM changed AS ch, appended AS a
    ORDER BY ch.event_ord;
END
$$;
