-- Vectors of memories for semantic and hybrid search (issue 25): the same data model as
-- SQLite's migrations/0009_memory_vectors.sql (see that file for `model`, `version` and the
-- bytes of `vector`), in this engine's dialect, keyed by the memory's id.
--
-- Nothing here needs pgvector, so every server can hold the table (and a snapshot with
-- vectors restores anywhere). Where the server has pgvector, `store/postgres/vectors.rs`
-- searches through a cast of `floats` to `vector(n)`: `floats` holds the stored vector's
-- values (what `vector` decodes to), so both engines score the same numbers.
CREATE TABLE memory_vectors (
    memory_id text COLLATE "C" NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    model     text COLLATE "C" NOT NULL,
    version   bigint  NOT NULL,
    dimension integer NOT NULL CHECK (dimension > 0),
    vector    bytea   NOT NULL,
    floats    real[]  NOT NULL CHECK (cardinality(floats) = dimension),
    PRIMARY KEY (model, memory_id)
);

-- The cascade above and the trigger below look up by memory.
CREATE INDEX memory_vectors_by_memory ON memory_vectors (memory_id);

-- A vector no longer describes a memory whose text changed: removed in the writing
-- transaction, as SQLite's trigger does.
CREATE FUNCTION modstate_memory_vectors_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM memory_vectors WHERE memory_id = old.id;
    RETURN NULL;
END $$;

CREATE TRIGGER memory_vectors_stale AFTER UPDATE OF body ON memories
FOR EACH ROW WHEN (old.body IS DISTINCT FROM new.body)
EXECUTE FUNCTION modstate_memory_vectors_stale();
