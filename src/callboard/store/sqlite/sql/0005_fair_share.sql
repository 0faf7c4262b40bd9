-- 0005: fair share between companies. A company may cap its running jobs, and the
-- claim reads each company's queued jobs of a type in claim order (one seek per
-- company and type) and counts each company's running jobs.

ALTER TABLE companies ADD COLUMN max_running INTEGER CHECK (max_running >= 1);

CREATE INDEX content_jobs_fair
    ON content_jobs (company_id, job_type, priority DESC, run_at, created_at)
    WHERE status = 'queued';

CREATE INDEX content_jobs_running_company
    ON content_jobs (company_id)
    WHERE status = 'running';
