-- A cache that bounds itself (issue 28); the same data model as migrations/0005_cache_bounds.sql.
ALTER TABLE artifacts ADD COLUMN last_used_ms bigint;
UPDATE artifacts SET last_used_ms = (extract(epoch FROM created_at::timestamptz) * 1000)::bigint;
CREATE INDEX artifacts_by_last_use ON artifacts (last_used_ms, created_at, digest);

CREATE TABLE artifact_cache (
    singleton               integer PRIMARY KEY CHECK (singleton = 0),
    artifacts               bigint NOT NULL,
    bytes                   bigint NOT NULL,
    max_size                bigint,
    older_than_ms           bigint,
    keep_newest             bigint,
    min_free                bigint,
    touch_interval_ms       bigint NOT NULL DEFAULT 3600000,
    hits                    bigint NOT NULL DEFAULT 0,
    misses                  bigint NOT NULL DEFAULT 0,
    evictions               bigint NOT NULL DEFAULT 0,
    evicted_bytes           bigint NOT NULL DEFAULT 0,
    collections             bigint NOT NULL DEFAULT 0,
    rechecks_skipped        bigint NOT NULL DEFAULT 0,
    last_collection_ms      bigint,
    last_collection_removed bigint,
    last_collection_freed   bigint,
    next_collection_ms      bigint NOT NULL DEFAULT 0
);
INSERT INTO artifact_cache (singleton, artifacts, bytes)
    SELECT 0, count(*), coalesce(sum(size), 0) FROM artifacts;

-- Exact totals inside every writing transaction (COPY of a restore included).
CREATE FUNCTION modstate_artifact_cache_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE artifact_cache SET artifacts = artifacts + 1, bytes = bytes + NEW.size
            WHERE singleton = 0;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE artifact_cache SET artifacts = artifacts - 1, bytes = bytes - OLD.size
            WHERE singleton = 0;
    ELSIF NEW.size <> OLD.size THEN
        UPDATE artifact_cache SET bytes = bytes - OLD.size + NEW.size WHERE singleton = 0;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER artifact_cache_totals AFTER INSERT OR DELETE OR UPDATE OF size ON artifacts
    FOR EACH ROW EXECUTE FUNCTION modstate_artifact_cache_totals();

CREATE TABLE artifact_pins (
    digest     text COLLATE "C" PRIMARY KEY,
    expires_ms bigint,
    pinned_at  text NOT NULL
);
