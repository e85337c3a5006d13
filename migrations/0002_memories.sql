-- Agent memories.
-- `seq` is the integer key the full-text index points at; `id` is the public, time-sortable
-- identifier (UUIDv7, strictly increasing in commit order within one store), so "newest
-- first" is `ORDER BY id DESC`. `generation` is the store generation this row was last
-- written at. Categories compare case-insensitively (ASCII); namespaces compare exactly.
CREATE TABLE memories (
    seq        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    namespace  TEXT    NOT NULL DEFAULT '',
    category   TEXT    NOT NULL DEFAULT '' COLLATE NOCASE,
    body       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    generation INTEGER NOT NULL
);

-- Newest-first listings filtered by namespace, by category, or both.
CREATE INDEX memories_by_namespace ON memories (namespace, category, id);
CREATE INDEX memories_by_category ON memories (category, id);

-- Full-text index over the body, stored once: the index reads text from `memories`
-- (external content) and triggers keep it in step inside the writing transaction.
-- unicode61 folds case and (with remove_diacritics 2) accents. No prefix indexes: they
-- help only prefixes of exactly their length, and cost a third more time on every insert.
CREATE VIRTUAL TABLE memories_fts USING fts5 (
    body,
    content = 'memories',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, body) VALUES (new.seq, new.body);
END;

CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, body) VALUES ('delete', old.seq, old.body);
END;

CREATE TRIGGER memories_fts_update AFTER UPDATE OF body ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, body) VALUES ('delete', old.seq, old.body);
    INSERT INTO memories_fts (rowid, body) VALUES (new.seq, new.body);
END;

-- The drift guard: one store-wide counter that every memory write (add, update, delete)
-- increments in its own transaction.
CREATE TABLE memory_generation (
    only  INTEGER PRIMARY KEY CHECK (only = 0),
    value INTEGER NOT NULL CHECK (value >= 0)
);
INSERT INTO memory_generation (only, value) VALUES (0, 0);
