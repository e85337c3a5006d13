-- Module-state artifacts, keyed by the digest of the module source.
-- `envelope` holds the saved state envelope exactly as it was given; `sha256` is the hash of
-- those bytes, checked on every read so a corrupted row is reported, never served.
CREATE TABLE artifacts (
    digest        TEXT    NOT NULL PRIMARY KEY,
    envelope      BLOB    NOT NULL,
    sha256        TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    state_type    TEXT    NOT NULL,
    state_version INTEGER NOT NULL,
    created_at    TEXT    NOT NULL
);
