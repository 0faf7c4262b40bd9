-- 0002: the claim index leads with job_type and ends in claim order.
--
-- Claiming takes, per job type, the first queued jobs in claim order (priority DESC,
-- run_at, created_at, then insertion order): one index seek per type instead of
-- ranking every queued job. The index's implicit last column, rowid, is the
-- insertion-order tie-break, so the old trailing `id` (a random UUID) goes.

DROP INDEX content_jobs_claim;

CREATE INDEX content_jobs_claim
    ON content_jobs (job_type, priority DESC, run_at, created_at)
    WHERE status = 'queued';
