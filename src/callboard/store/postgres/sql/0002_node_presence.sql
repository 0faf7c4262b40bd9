-- 0002: nodes announce themselves in callboard_nodes, and a commit notifies the
-- other nodes only when there are any. A node alone on the database used to hear
-- its own NOTIFY after every commit (its broker has the events already): a wake-up
-- of its listener per statement, about a tenth of a lone job's latency.

-- The nodes sharing this database, each seen within the last few seconds (every
-- node refreshes its row every 5 s and deletes it when it stops): while one is
-- alone, its commits notify nobody (see callboard_append_events).
CREATE TABLE callboard_nodes (
    node_id text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

-- Append events (arrays in event order) and return the last id given out, 0 for
-- none. Called last in a statement, after its job rows are changed (and locked):
-- the event id lock is then taken last and held only to commit, so two writers
-- cannot deadlock on it. Notifies the other nodes of the new head, when there are
-- any (callboard_nodes): a node's own commits reach its broker without one.
CREATE OR REPLACE FUNCTION callboard_append_events(
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
        PERFORM pg_notify('callboard_events', last::text);
    END IF;
    RETURN last;
END
$$;
