-- Ranked search with collection statistics (src/memory/rank.rs): BM25 needs the number of
-- memories and their total length when a first page is read. Counting them then would read
-- every row; they are kept instead, in the same transaction as every memory write, by
-- statement-level triggers (one update per statement, whatever its row count: a restore's
-- DELETE and multi-row INSERTs stay cheap). Memory writers already take turns on
-- memory_counter's row lock, so this row adds no contention.

-- The searched length of a memory, as src/store/postgres/search.rs counts it: the last
-- position of its vector (no stop words, so positions run 1..n). Where the server capped the
-- positions (255 per lexeme, none past 16383: a very long or repetitive memory), the words of
-- the indexed text (letters and digits only, see indexed_text) are counted instead.
CREATE FUNCTION modstate_search_length(v tsvector, body text, grams text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE
        WHEN bool_or(cardinality(u.positions) >= 255
                     OR u.positions[cardinality(u.positions)] >= 16383)
        THEN (SELECT count(*) FROM regexp_split_to_table(
                  CASE WHEN grams = '' THEN body ELSE grams END, '[^[:alnum:]]+') w
              WHERE w <> '')
        ELSE coalesce(max(u.positions[cardinality(u.positions)]), 0)
    END
    FROM unnest(v) u
    $$;

CREATE TABLE memory_search_totals (
    singleton integer PRIMARY KEY CHECK (singleton = 0),
    memories  bigint NOT NULL CHECK (memories >= 0),
    tokens    bigint NOT NULL CHECK (tokens >= 0)
);
INSERT INTO memory_search_totals (singleton, memories, tokens)
    SELECT 0, count(*), coalesce(sum(modstate_search_length(search, body, grams)), 0) FROM memories;

CREATE FUNCTION modstate_totals_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE memory_search_totals SET
        memories = memories + (SELECT count(*) FROM added),
        tokens = tokens + (SELECT coalesce(sum(modstate_search_length(search, body, grams)), 0) FROM added)
    WHERE singleton = 0;
    RETURN NULL;
END $$;

CREATE FUNCTION modstate_totals_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE memory_search_totals SET
        memories = memories - (SELECT count(*) FROM removed),
        tokens = tokens - (SELECT coalesce(sum(modstate_search_length(search, body, grams)), 0) FROM removed)
    WHERE singleton = 0;
    RETURN NULL;
END $$;

CREATE FUNCTION modstate_totals_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE memory_search_totals SET
        tokens = tokens
            + (SELECT coalesce(sum(modstate_search_length(search, body, grams)), 0) FROM added)
            - (SELECT coalesce(sum(modstate_search_length(search, body, grams)), 0) FROM removed)
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
