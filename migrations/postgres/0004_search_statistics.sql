-- Ranked search with collection statistics (src/memory/rank.rs): BM25 needs the number of
-- memories and their total length when a first page is read. Counting them then would read
-- every row; they are kept instead, in the same transaction as every memory write, by
-- statement-level triggers (one update per statement, whatever its row count: a restore's
-- DELETE and multi-row INSERTs stay cheap). Memory writers already take turns on
-- memory_counter's row lock, so this row adds no contention.

-- The searched length of a vector, as src/store/postgres/search.rs counts it: the last
-- position (no stop words, so positions run 1..n), or the number of positions where the
-- server capped them.
CREATE FUNCTION modstate_search_length(tsvector) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT greatest(coalesce(max(p), 0), count(p)) FROM unnest($1) u, unnest(u.positions) p $$;

CREATE TABLE memory_search_totals (
    singleton integer PRIMARY KEY CHECK (singleton = 0),
    memories  bigint NOT NULL CHECK (memories >= 0),
    tokens    bigint NOT NULL CHECK (tokens >= 0)
);
INSERT INTO memory_search_totals (singleton, memories, tokens)
    SELECT 0, count(*), coalesce(sum(modstate_search_length(search)), 0) FROM memories;

CREATE FUNCTION modstate_totals_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE memory_search_totals SET
        memories = memories + (SELECT count(*) FROM added),
        tokens = tokens + (SELECT coalesce(sum(modstate_search_length(search)), 0) FROM added)
    WHERE singleton = 0;
    RETURN NULL;
END $$;

CREATE FUNCTION modstate_totals_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE memory_search_totals SET
        memories = memories - (SELECT count(*) FROM removed),
        tokens = tokens - (SELECT coalesce(sum(modstate_search_length(search)), 0) FROM removed)
    WHERE singleton = 0;
    RETURN NULL;
END $$;

CREATE FUNCTION modstate_totals_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE memory_search_totals SET
        tokens = tokens
            + (SELECT coalesce(sum(modstate_search_length(search)), 0) FROM added)
            - (SELECT coalesce(sum(modstate_search_length(search)), 0) FROM removed)
    WHERE singleton = 0;
    RETURN NULL;
END $$;

CREATE TRIGGER memories_totals_insert AFTER INSERT ON memories
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION modstate_totals_added();
CREATE TRIGGER memories_totals_delete AFTER DELETE ON memories
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION modstate_totals_removed();
CREATE TRIGGER memories_totals_update AFTER UPDATE ON memories
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION modstate_totals_changed();
