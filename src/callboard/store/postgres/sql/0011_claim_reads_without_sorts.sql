-- 0011: the fair claim's plans no longer depend on the planner's row guesses.
-- PL/pgSQL keeps a claim's generic plan from a node's first claims, when the queue is
-- often empty and the tables have no statistics (or statistics that say they are
-- empty): on that estimate every index of queued jobs, and a sequential scan, look as
-- good as content_jobs_fair. The plan kept read the type's whole queue from another
-- index and sorted it, in the skip scan, the heads and the lock, and the update found
-- the jobs taken by another walk of the queue: about 10 ms of server CPU a claim with
-- 2,000 jobs queued, more as the queue grows, until autovacuum's next ANALYZE.
-- - The claim runs with sorts and sequential scans disabled. Every way to its reads of
--   the queue other than content_jobs_fair needs one or the other, so that index is
--   the one plan whatever the statistics say. The sorts it cannot do without (the
--   ranking of a few rows) are in every plan alike.
-- - The update finds the jobs taken by their ids alone: no partial index can answer
--   it, and any other way to them than the primary key needs a sequential scan or
--   another sort.
-- - Bitmap scans are off too: the count of each company's running jobs was one, and
--   a bitmap scan never marks an index entry dead, so each claim read again every
--   job that had run since the last vacuum (0.7 ms of a 4.7 ms claim of 8 jobs with
--   10 companies at work). A plain index scan marks them and then skips them.

CREATE OR REPLACE FUNCTION callboard_claim(
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
