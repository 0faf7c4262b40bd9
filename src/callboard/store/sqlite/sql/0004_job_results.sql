-- 0004: a job keeps what its handler returned (README, "Job results"): compact JSON
-- text, written with the done transition, NULL for a handler that returned nothing
-- and for every job that is not done.

ALTER TABLE content_jobs ADD COLUMN result TEXT;
