-- Vectors of memories (issue 25), as on SQLite's 0009: one row per memory and embedding model
-- (`name@dimension`), the memory version it was computed from, and the vector (normalised,
-- quantised values as real[]: no extension needed to hold them). Removed with the memory
-- (cascade) and, by the update that changes a memory's text, in its transaction (trigger).
CREATE TABLE memory_vectors (
    memory_id text COLLATE "C" NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    model     text COLLATE "C" NOT NULL,
    version   bigint NOT NULL,
    vector    real[] NOT NULL,
    PRIMARY KEY (model, memory_id)
);
CREATE INDEX memory_vectors_by_memory ON memory_vectors (memory_id);

CREATE FUNCTION modstate_vectors_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM memory_vectors WHERE memory_id = old.id;
    RETURN NULL;
END $$;
CREATE TRIGGER memory_vectors_stale AFTER UPDATE OF body ON memories
    FOR EACH ROW WHEN (old.body IS DISTINCT FROM new.body) EXECUTE FUNCTION modstate_vectors_stale();
