-- 0007: a failed attempt keeps what raised (README, "When a job fails"): the exception's
-- type ("KeyError", "mymodule.MyError"; "Timeout", "WorkerLost", "InvalidResult" for
-- the endings callboard decides) and its formatted traceback, at most 16 KiB (the tail).
-- NULL for a job that has not failed, and for a cancelled one.

ALTER TABLE content_jobs ADD COLUMN error_type TEXT;
ALTER TABLE content_jobs ADD COLUMN error_traceback TEXT;
