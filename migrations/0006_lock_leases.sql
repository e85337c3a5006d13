-- Lock leases (issue 29). SQLite keeps each key's fencing counter in the key's lock file
-- (<db>.locks/), beside its holder record, so this version has nothing to create here; it is
-- registered so schema versions mean the same on both engines.
SELECT 1;
