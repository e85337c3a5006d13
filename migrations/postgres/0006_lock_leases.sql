-- Lock leases and fencing tokens (issue 29).
--
-- One row per lock key that was ever held exclusively, never deleted: `token` only grows, so
-- each acquisition gets a number larger than every earlier one for that key. While a holder
-- holds the key, `expires` (the server's clock) is renewed by its heartbeat; a clean release
-- sets it to NULL. After a holder's session is lost, nobody takes the key until `expires`
-- has passed (lock-delay). `id` is the advisory-lock key (see src/store/postgres/locks.rs).
CREATE TABLE modstate_lock_leases (
    id bigint PRIMARY KEY,
    key text NOT NULL,
    token bigint NOT NULL,
    holder integer,
    expires timestamptz
);
