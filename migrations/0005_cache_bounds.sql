-- A cache that bounds itself (issue 28).
--
-- `last_used_ms`: when the artifact was last stored or read (Unix milliseconds), moved by a
-- read at most once per `touch_interval_ms` and only when the write lock is free at once.
-- Least recently used goes first. NULL (a row restored from an older snapshot) counts as
-- never used.
ALTER TABLE artifacts ADD COLUMN last_used_ms INTEGER;
UPDATE artifacts SET last_used_ms = CAST(strftime('%s', created_at) AS INTEGER) * 1000;
CREATE INDEX artifacts_by_last_use ON artifacts (last_used_ms, created_at, digest);

-- One row: the exact totals (kept by the triggers below inside every writing transaction,
-- so knowing the size never needs a scan), the stored policy, and what the collector did.
CREATE TABLE artifact_cache (
    only                    INTEGER PRIMARY KEY CHECK (only = 0),
    artifacts               INTEGER NOT NULL,
    bytes                   INTEGER NOT NULL,
    -- The stored policy; NULL: no automatic collection.
    max_size                INTEGER,
    older_than_ms           INTEGER,
    keep_newest             INTEGER,
    min_free                INTEGER,
    -- How often a read moves last use, and how often a writer looks at the policy when the
    -- store is not over its size cap.
    touch_interval_ms       INTEGER NOT NULL DEFAULT 3600000,
    -- Counters, folded in by the processes that count them when they write.
    hits                    INTEGER NOT NULL DEFAULT 0,
    misses                  INTEGER NOT NULL DEFAULT 0,
    evictions               INTEGER NOT NULL DEFAULT 0,
    evicted_bytes           INTEGER NOT NULL DEFAULT 0,
    collections             INTEGER NOT NULL DEFAULT 0,
    -- Collections that took the collector lock, found the store no longer over its policy
    -- and did nothing (another collector had done the work).
    rechecks_skipped        INTEGER NOT NULL DEFAULT 0,
    last_collection_ms      INTEGER,
    last_collection_removed INTEGER,
    last_collection_freed   INTEGER,
    -- No automatic collection before this (Unix ms): set a policy interval ahead after a
    -- collection that freed nothing, or after a periodic look.
    next_collection_ms      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO artifact_cache (only, artifacts, bytes)
    SELECT 0, count(*), coalesce(sum(size), 0) FROM artifacts;

CREATE TRIGGER artifact_cache_insert AFTER INSERT ON artifacts BEGIN
    UPDATE artifact_cache SET artifacts = artifacts + 1, bytes = bytes + NEW.size WHERE only = 0;
END;
CREATE TRIGGER artifact_cache_delete AFTER DELETE ON artifacts BEGIN
    UPDATE artifact_cache SET artifacts = artifacts - 1, bytes = bytes - OLD.size WHERE only = 0;
END;
CREATE TRIGGER artifact_cache_update AFTER UPDATE OF size ON artifacts
    WHEN NEW.size <> OLD.size BEGIN
    UPDATE artifact_cache SET bytes = bytes - OLD.size + NEW.size WHERE only = 0;
END;

-- Leases: `artifact pin DIGEST [--for DURATION]`. Prune never removes a digest with a lease
-- that has not expired (NULL: until unpinned). Pins held by a running process (`artifact
-- resolve`) are kernel or session locks instead, released when the process dies.
CREATE TABLE artifact_pins (
    digest     TEXT    NOT NULL PRIMARY KEY,
    expires_ms INTEGER,
    pinned_at  TEXT    NOT NULL
);
