-- The memory model agents expect: expiry, metadata and tags, history, supersedes, and a
-- default expiry per namespace (issue 27). Every existing memory is kept as it is: no expiry,
-- no metadata or tags, not superseded, with an empty history (its past was not recorded).
--
-- expires_at: RFC 3339 text in the stored format (UTC, microseconds), so it compares as text;
--   NULL = never. Every read filters `expires_at IS NULL OR expires_at > now`, so an expired
--   memory is gone from reads at once; `memory sweep` only reclaims the rows.
-- ttl_seconds: the lifetime the expiry was set from; with refresh_on_read = 1 a read pushes
--   expires_at to (read time + ttl_seconds).
-- metadata: a JSON object (text); tags: a JSON array of distinct strings, sorted.
-- superseded_by: the id of the memory that replaced this one (`memory add --supersedes`);
--   NULL while it is current. A superseded memory is hidden from ls and search by default.
ALTER TABLE memories ADD COLUMN expires_at TEXT;
ALTER TABLE memories ADD COLUMN ttl_seconds INTEGER;
ALTER TABLE memories ADD COLUMN refresh_on_read INTEGER NOT NULL DEFAULT 0;
ALTER TABLE memories ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE memories ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE memories ADD COLUMN superseded_by TEXT;

-- The sweep finds expired rows without reading the others.
CREATE INDEX memories_by_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;
-- "What superseded X" and the cycle check.
CREATE INDEX memories_by_superseded ON memories (superseded_by) WHERE superseded_by IS NOT NULL;

-- A namespace's default lifetime for new memories (NULL: none).
ALTER TABLE memory_namespaces ADD COLUMN default_ttl_seconds INTEGER;

-- History: one row per add, update, delete, expire (sweep), supersede and restore/import of a
-- memory, written in the same transaction as the change. Kept after the memory is gone, until
-- `memory history prune --older-than`. `changes` is a JSON object naming the fields that
-- changed with their old and new values (the text is in old_text/new_text).
CREATE TABLE memory_events (
    seq       INTEGER PRIMARY KEY,
    memory_id TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    old_text  TEXT,
    new_text  TEXT,
    changes   TEXT    NOT NULL DEFAULT '{}',
    actor     TEXT    NOT NULL DEFAULT '',
    at        TEXT    NOT NULL
);
CREATE INDEX memory_events_by_memory ON memory_events (memory_id, seq);
CREATE INDEX memory_events_by_time ON memory_events (at);

-- When expired memories were last swept: adds sweep at most once a minute, in their own
-- transaction (never a read's), so expired rows do not pile up where nobody runs a sweep.
CREATE TABLE memory_sweep (
    only    INTEGER PRIMARY KEY CHECK (only = 0),
    last_at TEXT    NOT NULL
);
INSERT INTO memory_sweep (only, last_at) VALUES (0, '');
