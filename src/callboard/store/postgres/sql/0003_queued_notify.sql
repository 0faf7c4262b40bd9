-- 0003: a commit that queues work (a submit, a retry, a reaped job) also notifies
-- callboard_queued, before callboard_events, with the same head. A worker node wakes
-- its dispatcher on it at once; before, it first read the new events back (one
-- round trip) to find out whether any of them queued a job.

-- Append events (arrays in event order) and return the last id given out, 0 for
-- none. Called last in a statement, after its job rows are changed (and locked):
-- the event id lock is then taken last and held only to commit, so two writers
-- cannot deadlock on it. Notifies the other nodes of the new head, when there are
-- any (callboard_nodes): a node's own commits reach its broker without one; and,
-- before it, of queued work (callboard_queued), so their dispatchers claim at once.
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
