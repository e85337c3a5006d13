-- The memory model agents expect (issue 27): the same data model as SQLite's
-- migrations/0007_memory_model.sql, in this engine's dialect. See that file for each column.
ALTER TABLE memories ADD COLUMN expires_at text COLLATE "C";
ALTER TABLE memories ADD COLUMN ttl_seconds bigint;
ALTER TABLE memories ADD COLUMN refresh_on_read boolean NOT NULL DEFAULT false;
ALTER TABLE memories ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
ALTER TABLE memories ADD COLUMN tags jsonb NOT NULL DEFAULT '[]';
ALTER TABLE memories ADD COLUMN superseded_by text COLLATE "C";

CREATE INDEX memories_by_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memories_by_superseded ON memories (superseded_by) WHERE superseded_by IS NOT NULL;
CREATE INDEX memories_by_metadata ON memories USING gin (metadata jsonb_path_ops);

ALTER TABLE memory_namespaces ADD COLUMN default_ttl_seconds bigint;

CREATE TABLE memory_events (
    seq       bigserial PRIMARY KEY,
    memory_id text COLLATE "C" NOT NULL,
    namespace text COLLATE "C" NOT NULL,
    action    text   NOT NULL,
    version   bigint NOT NULL,
    old_text  text,
    new_text  text,
    changes   jsonb  NOT NULL DEFAULT '{}',
    actor     text   NOT NULL DEFAULT '',
    at        text COLLATE "C" NOT NULL
);
CREATE INDEX memory_events_by_memory ON memory_events (memory_id, seq);
CREATE INDEX memory_events_by_time ON memory_events (at);

CREATE TABLE memory_sweep (
    singleton integer PRIMARY KEY CHECK (singleton = 0),
    last_at   text COLLATE "C" NOT NULL
);
INSERT INTO memory_sweep (singleton, last_at) VALUES (0, '');
