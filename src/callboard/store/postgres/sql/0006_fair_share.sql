-- 0006: fair share between companies. A company may cap its running jobs on all
-- nodes together (max_running, NULL: no cap); the claim serves, among jobs of equal
-- priority, the company with the fewest jobs running first. It reads each company's
-- queued jobs of a type in claim order (content_jobs_fair) and counts each
-- company's running jobs (content_jobs_running_company).

ALTER TABLE companies ADD COLUMN max_running integer CHECK (max_running >= 1);

CREATE INDEX content_jobs_fair
    ON content_jobs (company_id, job_type, priority DESC, run_at, created_at, seq)
    WHERE status = 'queued';

CREATE INDEX content_jobs_running_company
    ON content_jobs (company_id)
    WHERE status = 'running';

-- The claim, fair between companies (JobStore.claim): a function, so that it runs
-- two statements in one round trip. The first locks the companies with a cap that
-- have runnable jobs of these types, in id order (two claims never deadlock on
-- them): claims that may take their jobs take turns. The second, in a new snapshot
-- taken after those locks, counts every node's running jobs, so it sees what the
-- claims before it committed, and a cap holds however many nodes claim at once. FOR
-- NO KEY UPDATE: submits (the foreign key's KEY SHARE lock) do not wait on it.
--
-- In the second: each company's first rows of each type in claim order (at most
-- what the limit, the type's cap and the company's room allow) are locked,
-- skipping those another claim holds; each company's are ranked from 0 on top of
-- its running count (its load), those at or past its cap dropped, then those past
-- their type's cap, and the best max_jobs of the rest taken, ordered by priority,
-- load, then age. The rest stay locked only until this statement commits.
CREATE FUNCTION callboard_claim(
    job_types text[], type_caps integer[], max_jobs integer, at timestamptz,
    owner text, expires timestamptz
) RETURNS TABLE (job content_jobs, payload text, event_id bigint)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM companies AS c
    WHERE c.max_running IS NOT NULL AND EXISTS (
        SELECT 1 FROM content_jobs AS q
        WHERE q.company_id = c.id AND q.job_type = ANY(job_types)
          AND q.status = 'queued' AND q.run_at <= at
    )
    ORDER BY c.id
    FOR NO KEY UPDATE OF c;

    RETURN QUERY
    WITH caps AS (
        SELECT * FROM unnest(job_types, type_caps) AS t (job_type, cap)
    ),
    busy AS (
        SELECT r.company_id, count(*) AS n FROM content_jobs AS r
        WHERE r.status = 'running'
        GROUP BY r.company_id
    ),
    fleet AS (
        SELECT c.id, c.max_running, coalesce(b.n, 0) AS running
        FROM companies AS c LEFT JOIN busy AS b ON b.company_id = c.id
        WHERE c.max_running IS NULL OR coalesce(b.n, 0) < c.max_running
    ),
    candidates AS (
        SELECT k.*, caps.job_type, caps.cap, fleet.running, fleet.max_running
        FROM caps CROSS JOIN fleet CROSS JOIN LATERAL (
            SELECT j.id, j.company_id, j.priority, j.run_at, j.created_at, j.seq
            FROM content_jobs AS j
            WHERE j.company_id = fleet.id AND j.job_type = caps.job_type
              AND j.status = 'queued' AND j.run_at <= at
            ORDER BY j.priority DESC, j.run_at, j.created_at, j.seq
            LIMIT least(
                coalesce(caps.cap, max_jobs), max_jobs,
                coalesce(fleet.max_running - fleet.running, max_jobs)
            )
            FOR UPDATE SKIP LOCKED
        ) AS k
    ),
    loaded AS (
        SELECT cd.*, cd.running - 1 + row_number() OVER (
            PARTITION BY cd.company_id ORDER BY cd.priority DESC, cd.run_at, cd.created_at, cd.seq
        ) AS load
        FROM candidates AS cd
    ),
    eligible AS (
        SELECT l.*, row_number() OVER (
            PARTITION BY l.job_type ORDER BY l.priority DESC, l.load, l.run_at, l.created_at, l.seq
        ) AS type_rank
        FROM loaded AS l
        WHERE l.max_running IS NULL OR l.load < l.max_running
    ),
    chosen AS (
        SELECT e.id, row_number() OVER (
            ORDER BY e.priority DESC, e.load, e.run_at, e.created_at, e.seq
        ) AS event_ord
        FROM eligible AS e
        WHERE e.cap IS NULL OR e.type_rank <= e.cap
        ORDER BY e.priority DESC, e.load, e.run_at, e.created_at, e.seq
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
        FROM chosen
        WHERE j.id = chosen.id AND j.status = 'queued'
        RETURNING j AS row, j.id, j.company_id, callboard_job_payload(j) AS payload,
                  chosen.event_ord
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
