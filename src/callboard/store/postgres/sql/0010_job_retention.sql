-- 0010: finished jobs expire (CALLBOARD_JOB_RETENTION), and lists of a status stay
-- fast under millions of finished jobs. (Plain CREATE INDEX: a migration runs in a
-- transaction, which CONCURRENTLY cannot; on a big table it holds writes while it
-- builds.)

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
