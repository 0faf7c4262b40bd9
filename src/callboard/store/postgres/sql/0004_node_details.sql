-- 0004: a node's row in callboard_nodes says who it is: host, pid, when it started,
-- where it keeps assets and what its workers run, and last_seen by its own clock
-- (what live_nodes compares; seen_at stays on the database's clock for
-- callboard_append_events). Nodes learn of each other from these rows: one that keeps
-- assets on its own disk warns when others share the queue (actors/presence.py).
--
-- The columns may be NULL: a node of an older callboard, still running while another
-- applies this, keeps refreshing only seen_at. It is not listed as a live node.

ALTER TABLE callboard_nodes
    ADD COLUMN host text,
    ADD COLUMN pid integer,
    ADD COLUMN started_at timestamptz,
    ADD COLUMN storage_url text,
    ADD COLUMN job_types text,
    ADD COLUMN last_seen timestamptz;
