-- Bearer tokens for `modstate serve` (issue 26). Only a SHA-256 of each token is kept: the
-- token itself is shown once, when it is created, and cannot be read back from the database.
-- A token grants one scope (read or write) on a list of namespaces (a JSON array of strings).
CREATE TABLE tokens (
    name         TEXT PRIMARY KEY NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    namespaces   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT
) STRICT;
