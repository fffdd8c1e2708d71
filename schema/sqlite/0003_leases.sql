-- Crash recovery (issue 20): who is doing each unfinished piece of work, and whether that
-- process is still alive. Same design as PostgreSQL's.

-- The process that reserved a pending upload or began a delete (NULL: a row from before
-- this migration). Only that process completes or undoes the row, unless its lease has
-- ended; then recovery takes the row over.
ALTER TABLE files ADD COLUMN holder TEXT;

-- One row per running process, renewed while it lives (times as RFC 3339 UTC text).
CREATE TABLE leases (
    holder     TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);

-- Renames whose stored bytes may exist under both names: from the moment the new name
-- is linked until the old one is removed.
CREATE TABLE renames (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    holder     TEXT    NOT NULL,
    user_id    INTEGER NOT NULL,
    from_name  TEXT    NOT NULL,
    to_name    TEXT    NOT NULL,
    format     TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
CREATE INDEX idx_renames_user ON renames (user_id);
