-- Vectors of memories for semantic and hybrid search (issue 25), one row per memory and
-- embedding model. `model` names the model AND its dimension (`name@384`), so vectors of two
-- models are never compared. `version` is the memory version the vector was computed from: a
-- vector is stored only while the memory still has that version (`memory embed` fills in the
-- rest later). `vector` is the L2-normalised vector quantised to int8 with one scale per
-- vector: 4 bytes of little-endian f32 scale, then one signed byte per dimension. Similarity
-- is defined on these stored values (exact on what is stored, and a quarter of f32's bytes
-- to read per search).
--
-- A memory's vectors go with it: triggers remove them when the memory is deleted (or swept)
-- and when its text changes (the vector no longer describes it), in the writing transaction.
CREATE TABLE memory_vectors (
    seq     INTEGER NOT NULL,
    model   TEXT    NOT NULL,
    version INTEGER NOT NULL,
    vector  BLOB    NOT NULL,
    PRIMARY KEY (model, seq)
) WITHOUT ROWID;

-- "Which memories lack a vector" and the removal triggers look up by memory.
CREATE INDEX memory_vectors_by_seq ON memory_vectors (seq);

CREATE TRIGGER memory_vectors_delete AFTER DELETE ON memories BEGIN
    DELETE FROM memory_vectors WHERE seq = old.seq;
END;

CREATE TRIGGER memory_vectors_stale AFTER UPDATE OF body ON memories
WHEN old.body IS NOT new.body BEGIN
    DELETE FROM memory_vectors WHERE seq = old.seq;
END;
