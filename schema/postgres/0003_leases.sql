-- Crash recovery across replicas (issue 20): who is doing each unfinished piece of work,
-- and whether that process is still alive.

-- The process that reserved a pending upload or began a delete (NULL: a row from before
-- this migration, or a finished one). Only that process completes or undoes the row,
-- unless its lease has ended; then any replica takes the row over.
ALTER TABLE files ADD COLUMN holder TEXT;

-- One row per running process, renewed while it lives. A lease that has expired
-- belongs to a process that died (or lost the catalog for longer than the lease).
CREATE TABLE leases (
    holder     TEXT        PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Renames whose stored bytes may exist under both names: from the moment the new name
-- is linked until the old one is removed. Recovery removes whichever of the two names
-- no record claims; the storage watcher leaves both alone meanwhile.
CREATE TABLE renames (
    id         BIGSERIAL   PRIMARY KEY,
    holder     TEXT        NOT NULL,
    user_id    BIGINT      NOT NULL,
    from_name  TEXT        NOT NULL,
    to_name    TEXT        NOT NULL,
    format     TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_renames_user ON renames (user_id);
