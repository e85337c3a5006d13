-- The whole schema of version 3 on PostgreSQL: the same data model as SQLite's migrations
-- 0001–0003 (see migrations/*.sql), in this engine's dialect. A schema version means the
-- same tables and rules on both engines, so a snapshot moves between them.

-- Full-text search: words folded to lower case and stripped of accents (unaccent, a trusted
-- contrib extension), then English stems ("deploys" finds "deploy"), with no stop words: the
-- same folding as SQLite's `porter unicode61 remove_diacritics 2`. Copied from `simple`, not
-- `english`, which would drop words like "not" and "who". The text indexed has every
-- character that is not a letter or digit replaced by a space (search.rs), so the parser sees
-- only words and numbers, as unicode61 does: no host names, paths or versions kept whole.
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE TEXT SEARCH DICTIONARY modstate_english_stem (TEMPLATE = snowball, LANGUAGE = english);
CREATE TEXT SEARCH CONFIGURATION modstate_search (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION modstate_search
    ALTER MAPPING FOR asciiword, word, numword, asciihword, hword, hword_asciipart, hword_part,
        hword_numpart
    WITH unaccent, modstate_english_stem;

-- Which schema version this database holds; one row.
CREATE TABLE modstate_schema (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version integer NOT NULL
);

-- Module-state artifacts, keyed by the digest of the module source. `envelope` holds the
-- saved state envelope exactly as it was given; `sha256` is the hash of those bytes, checked
-- on every read so a corrupted row is reported, never served.
CREATE TABLE artifacts (
    digest        text COLLATE "C" PRIMARY KEY,
    envelope      bytea  NOT NULL,
    sha256        text   NOT NULL,
    size          bigint NOT NULL,
    state_type    text   NOT NULL,
    state_version bigint NOT NULL,
    created_at    text COLLATE "C" NOT NULL
);

-- Categories compare case-insensitively in ASCII only, as SQLite's NOCASE does.
CREATE FUNCTION modstate_fold(text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT translate($1, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') $$;

-- Times are RFC 3339 text compared as text (prune, newest first): byte order, COLLATE "C",
-- whatever the database's collation.

-- Agent memories. `id` is the public, time-sortable identifier (UUIDv7, strictly increasing
-- in commit order within one store), so "newest first" is `ORDER BY id DESC` (byte order:
-- COLLATE "C"). `version` is the stamp of the row's last write (see memory_counter).
-- `grams` holds the CJK bigrams of the body (src/memory/grams.rs), '' without CJK.
-- `search` is the full-text vector of the searched text, computed when the row is written
-- (src/store/postgres/search.rs says from what).
CREATE TABLE memories (
    id         text COLLATE "C" PRIMARY KEY,
    namespace  text COLLATE "C" NOT NULL DEFAULT '',
    category   text NOT NULL DEFAULT '',
    body       text NOT NULL,
    grams      text NOT NULL DEFAULT '',
    search     tsvector NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    updated_at text COLLATE "C" NOT NULL,
    version    bigint NOT NULL
);

-- Newest-first listings filtered by namespace, by category, or both.
CREATE INDEX memories_by_namespace ON memories (namespace, modstate_fold(category), id);
CREATE INDEX memories_by_category ON memories (modstate_fold(category), id);
-- The full-text index.
CREATE INDEX memories_search ON memories USING gin (search);

-- The drift guard: one store-wide counter that every memory write advances in its own
-- transaction (its row lock also puts memory writers in one order, the order of their ids).
CREATE TABLE memory_counter (
    singleton integer PRIMARY KEY CHECK (singleton = 0),
    value bigint NOT NULL CHECK (value >= 0)
);
INSERT INTO memory_counter (singleton, value) VALUES (0, 0);

-- A namespace's generation: the stamp of its last write; a row is never removed.
CREATE TABLE memory_namespaces (
    namespace  text COLLATE "C" PRIMARY KEY,
    generation bigint NOT NULL CHECK (generation >= 0)
);

-- Who holds which modstate lock, one row per server session holding one (a lock is held on
-- a session of its own). The server's lock table says which sessions hold a lock; a row
-- here only describes the holder, and a row whose session is gone is never shown.
CREATE TABLE modstate_lock_holders (
    pid         integer PRIMARY KEY,
    key         text NOT NULL,
    host        text NOT NULL,
    process     integer NOT NULL,
    command     text NOT NULL,
    acquired_at text NOT NULL
);
