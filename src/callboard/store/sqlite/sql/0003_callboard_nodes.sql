-- 0003: nodes announce themselves (actors/presence.py), as they do on PostgreSQL. The
-- embedded store has one node, so the table holds one row while it runs: what
-- GET /api/nodes lists.

CREATE TABLE callboard_nodes (
    node_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    storage_url TEXT NOT NULL,
    job_types TEXT NOT NULL, -- a JSON array of strings
    last_seen TEXT NOT NULL
) STRICT;
