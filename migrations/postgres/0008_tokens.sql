-- Bearer tokens for `modstate serve` (issue 26): the same data model as SQLite's
-- migrations/0008_tokens.sql, in this engine's dialect. See that file for each column.
CREATE TABLE tokens (
    name         text COLLATE "C" PRIMARY KEY,
    hash         text COLLATE "C" NOT NULL UNIQUE,
    scope        text NOT NULL CHECK (scope IN ('read', 'write')),
    namespaces   jsonb NOT NULL,
    created_at   text COLLATE "C" NOT NULL,
    last_used_at text COLLATE "C"
);
