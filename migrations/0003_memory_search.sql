-- Memory search that finds what people mean, and a drift guard per namespace without ABA.
--
-- 1. One store-wide counter hands out every stamp: each memory write takes the next value,
--    which becomes the written memory's `version` and its namespace's `generation`. The
--    counter never goes back (a restore moves it forward past every value handed out before,
--    see src/memory/stamps.rs), so no (namespace, generation) and no (memory, version) is ever
--    handed out twice.
ALTER TABLE memory_generation RENAME TO memory_counter;
ALTER TABLE memories RENAME COLUMN generation TO version;

-- The drift guard's unit: a namespace. A row is created by the namespace's first write and
-- never removed, so a namespace emptied by deletes keeps its generation. Existing namespaces
-- start at the store-wide generation they were guarded by until now: a value an agent read
-- before the upgrade is still accepted exactly when nothing has changed since.
CREATE TABLE memory_namespaces (
    namespace  TEXT    PRIMARY KEY,
    generation INTEGER NOT NULL CHECK (generation >= 0)
) WITHOUT ROWID;
INSERT INTO memory_namespaces (namespace, generation)
    SELECT DISTINCT namespace, (SELECT value FROM memory_counter WHERE only = 0) FROM memories;

-- 2. Words inside CJK text. Chinese and Japanese put no spaces between words, so the word
--    tokenizer sees a whole sentence as one token. `grams` holds, for a memory with any CJK
--    character, the body with every CJK character c replaced by " c d " where d is the next
--    character when that is CJK too (a bigram), else by " c " (the run's last character):
--    each CJK run becomes its overlapping bigrams, and text glued to CJK ("Dagger的配置")
--    becomes separate words. A memory without CJK has '' here and costs nothing. Bigrams, as
--    Lucene's CJK analyzer uses, rather than trigrams: most Chinese words are two characters
--    long, and a trigram index cannot find those.
--    The same transformation is written in Rust (src/memory/grams.rs) for new writes; a test
--    checks that the two agree.
ALTER TABLE memories ADD COLUMN grams TEXT NOT NULL DEFAULT '';

WITH RECURSIVE
    cjk_rows (seq, len) AS (
        SELECT seq, length(body) FROM memories
        WHERE body GLOB '*[ᄀ-ᇿ぀-ヿ㄰-㆏ㇰ-ㇿ㐀-䶿一-鿿가-힯豈-﫿ｦ-ﾟ𠀀-𱍏]*'
    ),
    -- One step per character: (row, characters done, grams so far).
    steps (seq, len, i, acc) AS (
        SELECT seq, len, 0, '' FROM cjk_rows
        UNION ALL
        SELECT s.seq, s.len, s.i + 1, s.acc || (
            SELECT CASE
                WHEN substr(m.body, s.i + 1, 1) GLOB '[ᄀ-ᇿ぀-ヿ㄰-㆏ㇰ-ㇿ㐀-䶿一-鿿가-힯豈-﫿ｦ-ﾟ𠀀-𱍏]'
                THEN ' ' || substr(m.body, s.i + 1, 1) || CASE
                    WHEN substr(m.body, s.i + 2, 1) GLOB '[ᄀ-ᇿ぀-ヿ㄰-㆏ㇰ-ㇿ㐀-䶿一-鿿가-힯豈-﫿ｦ-ﾟ𠀀-𱍏]'
                    THEN substr(m.body, s.i + 2, 1) ELSE '' END || ' '
                ELSE substr(m.body, s.i + 1, 1)
            END
            FROM memories m WHERE m.seq = s.seq
        )
        FROM steps s WHERE s.i < s.len
    )
UPDATE memories SET grams = (SELECT acc FROM steps WHERE steps.seq = memories.seq AND steps.i = steps.len)
WHERE seq IN (SELECT seq FROM cjk_rows);

-- 3. English stemming: `porter` wraps the word tokenizer, so "deploy" finds "Deploys" and
--    "prefer" finds "prefers"; unicode61 still folds case and accents. The index is rebuilt
--    from the rows: every memory is kept as it is.
DROP TRIGGER memories_fts_insert;
DROP TRIGGER memories_fts_delete;
DROP TRIGGER memories_fts_update;
DROP TABLE memories_fts;

CREATE VIRTUAL TABLE memories_fts USING fts5 (
    body,
    grams,
    content = 'memories',
    content_rowid = 'seq',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO memories_fts (memories_fts) VALUES ('rebuild');

CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, body, grams) VALUES (new.seq, new.body, new.grams);
END;

CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, body, grams)
        VALUES ('delete', old.seq, old.body, old.grams);
END;

CREATE TRIGGER memories_fts_update AFTER UPDATE OF body, grams ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, body, grams)
        VALUES ('delete', old.seq, old.body, old.grams);
    INSERT INTO memories_fts (rowid, body, grams) VALUES (new.seq, new.body, new.grams);
END;
