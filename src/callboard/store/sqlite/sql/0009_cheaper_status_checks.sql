-- 0009: cheaper job writes. SQLite evaluates `x IN (a, b, c)` (three values or more)
-- by building a temporary b-tree of the values each time a statement runs, and every
-- insert and status change of a job evaluated two such lists: the status CHECK and
-- the WHERE of content_jobs_finished. Written as ORs, they are plain comparisons.

-- The CHECK is part of the table's stored CREATE text, which only this changes:
-- nothing on disk depends on a CHECK's text (SQLite's documented procedure for
-- constraint changes). The index DDL below bumps the schema cookie, so other
-- connections read the new text; the migrating one is reset by apply_sqlite.
PRAGMA writable_schema = ON;

UPDATE sqlite_schema
SET sql = replace(
    sql,
    'CHECK (status IN (''queued'', ''running'', ''done'', ''failed'', ''cancelled''))',
    'CHECK (status = ''queued'' OR status = ''running'' OR status = ''done'''
    || ' OR status = ''failed'' OR status = ''cancelled'')'
)
WHERE type = 'table' AND name = 'content_jobs';

PRAGMA writable_schema = OFF;

DROP INDEX content_jobs_finished;

CREATE INDEX content_jobs_finished
    ON content_jobs (finished_at)
    WHERE status = 'done' OR status = 'failed' OR status = 'cancelled';
